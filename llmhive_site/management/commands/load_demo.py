"""Demo data for a living dashboard: roles, preferences, overrides, budgets, 30 days of usage."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from catalog.models import CatalogModel, Category
from costs.ingest import ingest_events
from costs.models import Budget, BudgetAction, BudgetPeriod, BudgetScope, UsageEvent
from routing.models import Accuracy, EscalationOverride, Role, RolePreference, Strategy

# slug, required capabilities, min context, default category, default accuracy, description
ROLES = [
    ("coder", ["supports_tools"], 64_000, "programming", Accuracy.BALANCED, "Writes and edits code with tools."),
    ("planner", ["supports_reasoning"], 32_000, "programming", Accuracy.HIGH, "Breaks a task into steps."),
    ("reviewer", ["supports_tools"], 32_000, "programming", Accuracy.BALANCED, "Reviews diffs."),
    ("writer", [], 16_000, "marketing", Accuracy.ECONOMY, "Drafts copy."),
    ("translator", [], 16_000, "translation", Accuracy.ECONOMY, "Translates text."),
    ("researcher", ["supports_reasoning"], 128_000, "science", Accuracy.HIGH, "Reads long sources."),
    ("summarizer", [], 32_000, "", Accuracy.ECONOMY, "Summarises documents."),
    ("vision", ["supports_multimodal_image"], 32_000, "", Accuracy.BALANCED, "Reads screenshots."),
    ("analyst", ["supports_structured_outputs"], 64_000, "finance", Accuracy.BALANCED, "Answers with tables."),
    ("support", [], 16_000, "", Accuracy.ECONOMY, "Answers customers."),
    ("legal", ["supports_reasoning"], 64_000, "legal", Accuracy.HIGH, "Checks contracts."),
    ("extractor", ["supports_structured_outputs"], 32_000, "", Accuracy.ECONOMY, "Pulls fields out of text."),
]
STRATEGIES = [
    ("single", "One call."),
    ("refine_on_failure", "Retry with a stronger model when the first answer fails checks."),
    ("ensemble", "Several models answer; a judge picks."),
]


class Command(BaseCommand):
    help = (
        "Load demo roles, preferences, overrides, budgets and 30 days of usage over the current catalog (idempotent)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--events-per-day", type=int, default=1500)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, days: int, events_per_day: int, seed: int, **options) -> str:
        models = list(CatalogModel.objects.routable().exclude(price_prompt__isnull=True).order_by("id"))
        if len(models) < 5:
            raise CommandError(
                "the catalog holds fewer than 5 routable models: sync it first "
                "(manage.py sync_catalog, or sync_catalog --from-file PATH with a saved GET /models response)"
            )
        rng = random.Random(seed)
        with transaction.atomic():
            roles = self._roles(models)
            self._overrides(models)
            self._budgets()
        stored = self._usage(roles, models, rng, days, events_per_day)
        return (
            f"demo loaded: {len(roles)} roles, {RolePreference.objects.count()} preferences, "
            f"{EscalationOverride.objects.count()} overrides, {Budget.objects.count()} budgets, "
            f"{stored:,} new usage events over {days} days"
        )

    def _roles(self, models: list[CatalogModel]) -> list[Role]:
        categories = {c.slug: c for c in Category.objects.all()}
        for slug, description in STRATEGIES:
            Strategy.objects.update_or_create(slug=slug, defaults={"description": description})
        roles = []
        for slug, capabilities, context, category, accuracy, description in ROLES:
            role, _ = Role.objects.update_or_create(
                slug=slug,
                defaults={
                    "name": slug.replace("-", " ").title(),
                    "description": description,
                    "required_capabilities": capabilities,
                    "min_context_length": context,
                    "default_category": categories.get(category),
                    "default_accuracy": accuracy,
                },
            )
            roles.append(role)
            if not role.preferences.exists():
                fitting = [m for m in models if not role.missing_for(m)]
                # Prefer the dearer, more capable models of the fitting ones: what an admin would pick.
                fitting.sort(key=lambda m: (-(m.price_completion or 0), m.id))
                for position, model in enumerate(fitting[:2]):
                    RolePreference.objects.create(role=role, model=model, position=position)
        return roles

    def _overrides(self, models: list[CatalogModel]) -> None:
        if EscalationOverride.objects.exists():
            return
        by_price = sorted(models, key=lambda m: (m.price_completion or 0, m.id))
        reasoning = [m for m in by_price if m.supports_reasoning]
        if len(by_price) >= 2 and reasoning:
            EscalationOverride.objects.create(
                from_model=by_price[0], to_model=reasoning[len(reasoning) // 2], position=0
            )
            if len(reasoning) > 1:
                EscalationOverride.objects.create(
                    from_model=reasoning[len(reasoning) // 2], to_model=reasoning[-1], position=1
                )

    def _budgets(self) -> None:
        Budget.objects.get_or_create(
            name="Company monthly",
            defaults={
                "scope": BudgetScope.GLOBAL,
                "period": BudgetPeriod.MONTH,
                "limit_usd": Decimal("400"),
                "action": BudgetAction.DOWNGRADE,
            },
        )
        Budget.objects.get_or_create(
            name="Coder daily",
            defaults={
                "scope": BudgetScope.ROLE,
                "scope_value": "coder",
                "period": BudgetPeriod.DAY,
                "limit_usd": Decimal("15"),
                "action": BudgetAction.DOWNGRADE,
            },
        )
        Budget.objects.get_or_create(
            name="Ensemble weekly",
            defaults={
                "scope": BudgetScope.STRATEGY,
                "scope_value": "ensemble",
                "period": BudgetPeriod.WEEK,
                "limit_usd": Decimal("60"),
                "action": BudgetAction.BLOCK,
            },
        )

    def _usage(self, roles: list[Role], models: list[CatalogModel], rng: random.Random, days: int, per_day: int) -> int:
        now = timezone.now()
        # Each role works with a handful of models; each model has its own success rate.
        crew = {
            role.slug: [m for m in models if not role.missing_for(m)][:: max(1, len(models) // 40)][:6] or models[:3]
            for role in roles
        }
        skill = {m.id: rng.uniform(0.6, 0.97) for m in models}
        stored = 0
        batch: list[dict] = []
        for day in range(days, 0, -1):
            start = now - timedelta(days=day)
            volume = int(per_day * rng.uniform(0.7, 1.3))
            for n in range(volume):
                role = rng.choice(roles)
                model = rng.choice(crew[role.slug])
                prompt = int(rng.lognormvariate(7, 0.8))
                completion = int(rng.lognormvariate(5.5, 0.7))
                reasoning = int(completion * rng.uniform(0.2, 0.6)) if model.supports_reasoning else 0
                batch.append(
                    {
                        "request_id": f"demo-{day}-{n}",
                        "occurred_at": start + timedelta(seconds=rng.uniform(0, 86_399)),
                        "model": model.id,
                        "role": role.slug,
                        "strategy": rng.choices([s for s, _ in STRATEGIES], weights=[6, 3, 1])[0],
                        "category": role.default_category.slug if role.default_category_id else "",
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "reasoning_tokens": reasoning,
                        "success": rng.random() < skill[model.id],
                        "quality_score": round(rng.uniform(0.4, 1.0), 2),
                        "latency_ms": int(rng.lognormvariate(7, 0.5)),
                        "tools": ["search"] if role.slug in ("coder", "researcher") and rng.random() < 0.3 else [],
                    }
                )
                if len(batch) == 1000:
                    stored += self._ingest_new(batch)
                    batch = []
            self.stderr.write(f"\rusage: {days - day + 1}/{days} days", ending="")
        if batch:
            stored += self._ingest_new(batch)
        self.stderr.write("")
        return stored

    @staticmethod
    def _ingest_new(batch: list[dict]) -> int:
        # A rerun draws its events afresh (times move with the clock): the ids already stored are
        # left alone, since sending them again with another payload is an idempotency conflict.
        known = set(
            UsageEvent.objects.filter(request_id__in=[e["request_id"] for e in batch]).values_list(
                "request_id", flat=True
            )
        )
        return ingest_events([e for e in batch if e["request_id"] not in known]).accepted
