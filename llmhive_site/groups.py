"""The admin's two groups, defined once: a data migration creates them, and `post_migrate`
keeps their permissions complete when later migrations add models.

- Finance: sees costs (the ledger, daily costs, budgets) and exports them; sees the catalog
  and routing data it needs to read a report (not the catalog's model pages); changes nothing.
- Catalog curators: change the catalog, routing data and budgets; run health checks; see costs;
  export nothing. Records that jobs write (sync runs, price history, rankings, endpoints) stay
  view-only, and catalog models are changed, never added or deleted: the sync owns their rows.
"""

from __future__ import annotations

FINANCE = "Finance"
CURATORS = "Catalog curators"

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
EDIT = (VIEW, ADD, CHANGE, DELETE)

# app label -> model -> actions
GROUPS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    FINANCE: {
        "costs": {
            "usageevent": (VIEW, "export"),
            "dailycost": (VIEW, "export"),
            "budget": (VIEW,),
            "generationcheck": (VIEW,),  # the reconciliation with OpenRouter's records
        },
        # Not CatalogModel: its page is the curators' workbench (and carries their actions);
        # finance reads models through the cost reports. Not ApiKey: secrets are admins' business.
        "catalog": {
            "family": (VIEW,),
            "category": (VIEW,),
            "pricechange": (VIEW,),
            "categoryranking": (VIEW,),
            "modelendpoint": (VIEW,),
            "syncrun": (VIEW,),
        },
        "core": {"alert": (VIEW,)},
        "routing": {
            "role": (VIEW,),
            "rolepreference": (VIEW,),
            "escalationoverride": (VIEW,),
            "strategy": (VIEW,),
            "strategystat": (VIEW,),
            "qualityprior": (VIEW,),
            "modelcooldown": (VIEW,),
            # Finance evaluates the drafts (and policy files it uploads on the page); curators write them.
            "policydraft": (VIEW,),
        },
    },
    CURATORS: {
        "catalog": {
            "catalogmodel": (VIEW, CHANGE),
            "family": EDIT,
            "category": EDIT,
            "pricechange": (VIEW,),
            "categoryranking": (VIEW,),
            "modelendpoint": (VIEW,),
            "syncrun": (VIEW,),
        },
        "core": {"alert": (VIEW, CHANGE)},
        "routing": {
            "role": EDIT,
            "rolepreference": EDIT,
            "escalationoverride": EDIT,
            "strategy": EDIT,
            "strategystat": (VIEW,),
            "qualityprior": EDIT,  # and import them (which needs add and change)
            # Change: the action that closes a cooldown (its rows are written by the ingest only).
            "modelcooldown": (VIEW, CHANGE),
            "policydraft": EDIT,  # and evaluate them (routing.admin_evaluate)
        },
        "costs": {"budget": EDIT, "dailycost": (VIEW,), "usageevent": (VIEW,), "generationcheck": (VIEW,)},
        "health": {"healthcheckrun": (VIEW, "run"), "modelhealthcheck": (VIEW,), "modelreliability": (VIEW,)},
    },
}


def codenames(spec: dict[str, dict[str, tuple[str, ...]]]) -> set[tuple[str, str]]:
    return {
        (app, f"{action}_{model}")
        for app, models in spec.items()
        for model, actions in models.items()
        for action in actions
    }


def sync_groups(apps=None) -> dict[str, int]:
    """Create the groups and give each exactly its permissions (those that exist yet).

    Idempotent; `apps` is a migration's app registry, or None for the live one. Returns the
    number of permissions per group.
    """
    if apps is None:
        from django.contrib.auth.models import Group, Permission
    else:
        Group, Permission = apps.get_model("auth", "Group"), apps.get_model("auth", "Permission")
    result = {}
    for name, spec in GROUPS.items():
        wanted = codenames(spec)
        group, _ = Group.objects.get_or_create(name=name)
        permissions = [
            p
            for p in Permission.objects.filter(content_type__app_label__in={a for a, _ in wanted}).select_related(
                "content_type"
            )
            if (p.content_type.app_label, p.codename) in wanted
        ]
        group.permissions.set(permissions)
        result[name] = len(permissions)
    return result


def on_post_migrate(sender, **kwargs) -> None:
    """post_migrate is sent once per app, in INSTALLED_APPS order, each time right after that
    app's permissions are made: act on the last one, when every permission exists (also after a
    test database flush)."""
    from django.apps import apps

    if sender.label == list(apps.get_app_configs())[-1].label:
        sync_groups()
