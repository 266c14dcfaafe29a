"""Routing in the admin: API keys (secret shown once, revoked, never deleted), roles with their
ordered preferences, escalation overrides, strategies and what the outcomes taught."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import OuterRef, Prefetch, Subquery, Sum
from django.http import Http404, HttpRequest
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV

from catalog.models import CAPABILITIES, ModelEndpoint
from catalog.selectors import known_output_modalities
from core.admin_mixins import EmptyMessageInline, ReadOnlyMixin
from core.models import DataVersion
from core.money import usd_html
from costs.models import error_summary
from routing import admin_evaluate, cooldowns
from routing.memory import rebuild_strategy_memory
from routing.models import (
    COOLDOWN_FIELDS,
    QUANTIZATIONS,
    ROUTING_VERSION,
    CooldownState,
    EscalationOverride,
    ModelCooldown,
    PolicyDraft,
    QualityPrior,
    Role,
    RolePreference,
    Strategy,
    StrategyStat,
)
from routing.policies import PolicyError
from routing.providers import provider_key, provider_rules
from routing.replay import load_policy
from routing.resources import QualityPriorResource

# --- Admin-curated routing data ------------------------------------------------------------------


class ProviderListField(forms.CharField):
    """Provider slugs typed as "deepinfra, together" (commas or spaces), kept as a list; Role.clean
    says what is wrong with them."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value) or ""
        return [slug for slug in text.replace(",", " ").split() if slug]


def _provider_list(label: str, help_text: str) -> ProviderListField:
    return ProviderListField(label=label, required=False, help_text=help_text)


class RoleForm(forms.ModelForm):
    required_capabilities = forms.MultipleChoiceField(
        choices=[(c, c.removeprefix("supports_").replace("_", " ")) for c in CAPABILITIES],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Every candidate for this role must have each ticked capability.",
    )
    provider_order = _provider_list("order", "Provider slugs to try first, in order (commas or spaces).")
    provider_only = _provider_list(
        "only",
        "Only these providers (blank: any). A model whose recorded endpoints are all elsewhere is not a candidate.",
    )
    provider_ignore = _provider_list("ignore", "Never these providers.")
    provider_quantizations = forms.MultipleChoiceField(
        label="quantizations",
        choices=[(q, q) for q in QUANTIZATIONS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Only endpoints of a ticked quantization (none ticked: any). 'unknown' is an endpoint that does not say.",
    )
    output_modalities = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="What a candidate may answer with: a model that outputs anything else (an image for a text "
        "role) is never chosen.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The modalities the catalog knows, and any the role already holds (so a form never drops one).
        known = known_output_modalities() | set(self.instance.output_modalities or [])
        self.fields["output_modalities"].choices = [(m, m) for m in sorted(known)]

    class Meta:
        model = Role
        fields = (
            "slug",
            "name",
            "description",
            "required_capabilities",
            "min_context_length",
            "output_modalities",
            "allow_free",
            "default_category",
            "default_accuracy",
            "exploration_rate",
            "active",
            "max_latency_ms",
            "provider_sort",
            "provider_order",
            "provider_only",
            "provider_ignore",
            "provider_allow_fallbacks",
            "provider_require_parameters",
            "provider_data_collection",
            "provider_zdr",
            "provider_quantizations",
            *COOLDOWN_FIELDS,
        )

    def clean_provider_quantizations(self) -> list[str]:
        return [q for q in QUANTIZATIONS if q in set(self.cleaned_data["provider_quantizations"])]

    def clean_required_capabilities(self) -> list[str]:
        return [c for c in CAPABILITIES if c in set(self.cleaned_data["required_capabilities"])]


class PreferenceFormSet(forms.BaseInlineFormSet):
    """Checks each preferred model against the role as the form above is about to save it.

    RolePreference.clean() can only see the role as stored; on the admin page the capabilities may
    change in the same submit, and a new role has no row yet.
    """

    def clean(self) -> None:
        super().clean()
        role: Role = self.instance
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            model = form.cleaned_data.get("model")
            if model is not None:
                reasons = role.missing_for(model)
                if reasons:
                    form.add_error("model", f"{model.pk} cannot serve this role: {'; '.join(reasons)}.")


class RolePreferenceInline(EmptyMessageInline, admin.TabularInline):
    model = RolePreference
    formset = PreferenceFormSet
    fields = ("position", "model", "family")
    autocomplete_fields = ("model", "family")
    extra = 1
    ordering = ("position", "id")
    classes = ("preference-order",)
    verbose_name = "preference"
    verbose_name_plural = "preferences, in order (▲ ▼ move a row; the first eligible one wins)"
    empty_message = "No preferences saved: the best-scored eligible model wins."


class OverrideInline(EmptyMessageInline, admin.TabularInline):
    model = EscalationOverride
    fk_name = "role"
    fields = ("position", "from_model", "from_family", "to_model")
    autocomplete_fields = ("from_model", "from_family", "to_model")
    extra = 0
    ordering = ("position", "id")
    verbose_name = "escalation override for this role"
    verbose_name_plural = "escalation overrides for this role only"
    empty_message = "No escalation overrides for this role: escalation follows the global overrides, then scores."


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    form = RoleForm
    inlines = (RolePreferenceInline, OverrideInline)
    list_display = (
        "slug",
        "name",
        "capability_list",
        "min_context_length",
        "output_list",
        "allow_free",
        "default_category",
        "default_accuracy",
        "preference_list",
        "provider_summary",
        "active",
    )
    list_filter = ("active", "default_accuracy", "default_category", "allow_free")
    list_select_related = ("default_category",)
    search_fields = ("slug", "name")
    fieldsets = (
        (None, {"fields": ("slug", "name", "description", "active")}),
        (
            "What a candidate needs",
            {"fields": ("required_capabilities", "min_context_length", "output_modalities", "allow_free")},
        ),
        ("How to choose", {"fields": ("default_category", "default_accuracy", "exploration_rate", "max_latency_ms")}),
        (
            "Provider preferences",
            {
                "description": "Sent as OpenRouter's <code>provider</code> object with every /route answer. "
                "Models whose recorded endpoints meet none of only / ignore / quantizations (or the latency "
                "ceiling) are not candidates; data collection and ZDR are left to OpenRouter to enforce.",
                "fields": (
                    ("provider_sort", "provider_data_collection"),
                    "provider_order",
                    "provider_only",
                    "provider_ignore",
                    ("provider_allow_fallbacks", "provider_require_parameters", "provider_zdr"),
                    "provider_quantizations",
                ),
            },
        ),
        (
            "Cooldowns",
            {
                "fields": COOLDOWN_FIELDS,
                "description": "When a model's retryable failures trip its circuit breaker for this role. Empty "
                "fields use the LLMHIVE_COOLDOWN_* settings; a role with none set follows the default policy.",
            },
        ),
    )

    class Media:
        js = ("routing/preference_order.js",)
        css = {"all": ("routing/preference_order.css",)}

    def get_queryset(self, request):
        # One extra query for every role's preferences, not one per row.
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "preferences", queryset=RolePreference.objects.order_by("position", "id").select_related("family")
                )
            )
        )

    @admin.display(description="needs")
    def capability_list(self, obj: Role) -> str:
        return ", ".join(c.removeprefix("supports_").replace("_", " ") for c in obj.required_capabilities) or "—"

    @admin.display(description="outputs")
    def output_list(self, obj: Role) -> str:
        return ", ".join(obj.output_modalities or []) or "—"

    @admin.display(description="preferences")
    def preference_list(self, obj: Role) -> str:
        return " › ".join(str(p.model_id or p.family) for p in obj.preferences.all()) or "—"

    @admin.display(description="providers")
    def provider_summary(self, obj: Role) -> str:
        """The role's `provider` object in a line (what /route sends besides max_price)."""
        provider = provider_rules(obj)["provider"] or {}
        parts = [
            f"{key.replace('_', ' ')}: {', '.join(value) if isinstance(value, list) else str(value).lower()}"
            for key, value in provider.items()
        ]
        return "; ".join(parts) or "—"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        unseen = unseen_providers(obj)
        if unseen:
            self.message_user(
                request,
                f"No endpoint research recorded is served by {', '.join(unseen)}: check the spelling against "
                "OpenRouter's provider list (a misspelt 'only' leaves out every model whose endpoints are known).",
                messages.WARNING,
            )

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is RolePreference:
            renumber(RolePreference.objects.filter(role=form.instance))
        elif formset.model is EscalationOverride:
            renumber(EscalationOverride.objects.filter(role=form.instance))


def unseen_providers(role: Role) -> list[str]:
    """The provider slugs the role names that no recorded endpoint answers to (none while research
    has recorded no endpoint at all)."""
    named = list(dict.fromkeys([*role.provider_order, *role.provider_only, *role.provider_ignore]))
    if not named:
        return []
    recorded = set(ModelEndpoint.objects.values_list("provider_name", "tag").distinct())
    if not recorded:
        return []
    tags = {tag for _, tag in recorded if tag} | {tag.split("/", 1)[0] for _, tag in recorded if tag}
    names = {provider_key(name) for name, _ in recorded}
    return [slug for slug in named if slug not in tags and provider_key(slug) not in names]


def renumber(queryset) -> None:
    """Positions 10, 20, 30… in the current order, so a row can always be slotted between two."""
    rows = list(queryset.order_by("position", "id"))
    changed = []
    for index, row in enumerate(rows, start=1):
        if row.position != index * 10:
            row.position = index * 10
            changed.append(row)
    if changed:
        queryset.model.objects.bulk_update(changed, ["position"])
        DataVersion.bump(ROUTING_VERSION)  # bulk_update sends no signal


@admin.register(EscalationOverride)
class EscalationOverrideAdmin(admin.ModelAdmin):
    list_display = ("__str__", "from_model", "from_family", "to_model", "role", "position")
    list_display_links = ("__str__",)
    list_editable = ("position",)
    list_filter = ("role", "from_family")
    list_select_related = ("from_family", "role", "from_model", "to_model")
    search_fields = ("from_model__id", "to_model__id", "from_family__slug")
    autocomplete_fields = ("from_model", "from_family", "to_model", "role")
    ordering = ("position", "id")
    fields = ("from_model", "from_family", "to_model", "role", "position")


@admin.register(QualityPrior)
class QualityPriorAdmin(ImportExportModelAdmin):
    """Quality priors from outside (arena or benchmark scores), imported as CSV: the prior a
    decision starts from for a model or family where no category ranking speaks."""

    resource_classes = [QualityPriorResource]
    formats = [CSV]
    list_display = ("__str__", "model", "family", "score", "source", "as_of", "updated_at")
    list_filter = ("source", "family")
    list_select_related = ("model", "family")
    search_fields = ("model__id", "family__slug", "source")
    autocomplete_fields = ("model", "family")
    fields = ("model", "family", "score", "source", "as_of", "note")
    date_hierarchy = "as_of"

    def has_import_permission(self, request) -> bool:
        # An import adds and changes priors: it needs both rights (the library asks for none).
        return self.has_add_permission(request) and self.has_change_permission(request)


@admin.register(Strategy)
class StrategyAdmin(admin.ModelAdmin):
    list_display = ("slug", "description", "requests", "success_rate", "cost", "created_at")
    search_fields = ("slug", "description")
    readonly_fields = ("created_at",)
    actions = ("rebuild_memory",)

    def get_queryset(self, request):
        totals = StrategyStat.objects.filter(strategy=OuterRef("slug")).values("strategy")
        return (
            super()
            .get_queryset(request)
            .annotate(
                total_requests=Subquery(totals.annotate(n=Sum("requests")).values("n")),
                total_successes=Subquery(totals.annotate(n=Sum("successes")).values("n")),
                total_cost=Subquery(totals.annotate(n=Sum("cost_usd")).values("n")),
            )
        )

    @admin.display(description="requests", ordering="total_requests")
    def requests(self, obj) -> int:
        return obj.total_requests or 0

    @admin.display(description="success rate")
    def success_rate(self, obj) -> str:
        return f"{obj.total_successes / obj.total_requests:.1%}" if obj.total_requests else "—"

    @admin.display(description="cost", ordering="total_cost")
    def cost(self, obj) -> str:
        return usd_html(obj.total_cost)

    @admin.action(description="Rebuild strategy memory from the usage ledger", permissions=["change"])
    def rebuild_memory(self, request: HttpRequest, queryset) -> None:
        rows = rebuild_strategy_memory()
        self.message_user(request, f"Strategy memory rebuilt from the ledger: {rows} rows.", messages.SUCCESS)


@admin.register(StrategyStat)
class StrategyStatAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """What the outcomes taught: read-only, rebuilt from the ledger, never edited by hand."""

    list_display = (
        "model",
        "role",
        "category",
        "strategy",
        "requests",
        "successes",
        "rate",
        "cost",
        "errors",
        "updated_at",
    )
    list_filter = ("strategy", "role", "category")
    search_fields = ("model", "role", "strategy")
    show_full_result_count = False

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj: StrategyStat) -> str:
        return usd_html(obj.cost_usd)

    @admin.display(description="success rate")
    def rate(self, obj: StrategyStat) -> str:
        rate = obj.success_rate
        return "—" if rate is None else f"{rate:.1%}"

    @admin.display(description="failures by class")
    def errors(self, obj: StrategyStat) -> str:
        return error_summary(obj)


class CooldownStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "open"), ("half-open", "half-open"), ("closed", "closed")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "open":
            return queryset.filter(state=CooldownState.OPEN, until__gt=now)
        if self.value() == "half-open":
            return queryset.filter(state=CooldownState.OPEN, until__lte=now)
        if self.value() == "closed":
            return queryset.filter(state=CooldownState.CLOSED)
        return queryset


@admin.register(ModelCooldown)
class ModelCooldownAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The circuit breakers, tripped by reported failures (routing.cooldowns): read here, closed
    by hand with the action (a model known to be fine again), never edited."""

    list_display = ("model", "policy", "shown", "reason", "until", "trips", "streak", "opened_at", "updated_at")
    list_filter = (CooldownStateFilter, "role")
    search_fields = ("model", "role")
    ordering = ("-updated_at",)
    actions = ("close_selected",)

    @admin.display(description="role")
    def policy(self, obj: ModelCooldown) -> str:
        return obj.role or "(default policy)"

    @admin.display(description="state", ordering="state")
    def shown(self, obj: ModelCooldown) -> str:
        return obj.shown_state

    @admin.action(description="Close selected cooldowns (route to the models again)", permissions=["close"])
    def close_selected(self, request: HttpRequest, queryset) -> None:
        with transaction.atomic():
            closed = cooldowns.close(queryset, f"by {request.user.get_username()} in the admin")
        self.message_user(request, f"{closed} cooldown(s) closed.", messages.SUCCESS)

    def has_close_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("routing.change_modelcooldown")


# --- Evaluating a policy before it runs ------------------------------------------------------------


class PolicyDraftForm(forms.ModelForm):
    class Meta:
        model = PolicyDraft
        fields = ("name", "policy", "notes")
        widgets = {"policy": forms.Textarea(attrs={"rows": 24, "cols": 100, "spellcheck": "false"})}

    def clean_policy(self) -> str:
        """Read field by field and checked against what exists now: the error names the field."""
        text = self.cleaned_data["policy"]
        try:
            load_policy(text)
        except PolicyError as exc:
            raise forms.ValidationError(str(exc)) from None
        return text


@admin.register(PolicyDraft)
class PolicyDraftAdmin(admin.ModelAdmin):
    form = PolicyDraftForm
    list_display = ("name", "updated_at", "updated_by", "evaluate_link")
    list_select_related = ("updated_by",)
    search_fields = ("name", "notes")
    readonly_fields = ("created_at", "updated_at", "updated_by")
    change_form_template = "admin/routing/policydraft/change_form.html"

    def get_urls(self):
        evaluate = self.admin_site.admin_view(self.evaluate_view)
        download = self.admin_site.admin_view(self.download_view)
        return [
            path("evaluate/", evaluate, name="routing_policydraft_evaluate"),
            path("evaluate/download.<str:fmt>", download, name="routing_policydraft_evaluate_download"),
            *super().get_urls(),
        ]

    def evaluate_view(self, request: HttpRequest):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return admin_evaluate.evaluate_view(request, self.admin_site.each_context(request))

    def download_view(self, request: HttpRequest, fmt: str):
        if not self.has_view_permission(request):
            raise PermissionDenied
        if fmt not in ("json", "csv"):
            raise Http404("json or csv")
        return admin_evaluate.download_view(request, fmt)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        """A new draft starts from the policy in force (the roles' settings), to edit."""
        return {"policy": admin_evaluate.policy_in_force_text(), **super().get_changeform_initial_data(request)}

    @admin.display(description="Evaluate")
    def evaluate_link(self, draft: PolicyDraft) -> str:
        url = reverse("admin:routing_policydraft_evaluate")
        return format_html('<a href="{}?draft={}">Evaluate</a>', url, draft.pk)

    def save_model(self, request, obj, form, change) -> None:
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
