"""manage.py check_openrouter_models [--top N] [--model ID ...] [--no-ping] [--json]

Connectivity to OpenRouter (and the key's limit and usage when a key is set), then each checked
model: endpoints up, best uptime, and a ping. Exit status 1 when a checked model fails; one line
(CommandError) when OpenRouter cannot be reached at all."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.money import decimal_str
from health.checks import run_health_checks
from health.models import HealthCheckRun, ModelHealthCheck, Trigger
from health.probing import HealthCheckError


class Command(BaseCommand):
    help = "Check OpenRouter and the models that matter: endpoint status (free), then a capped ping."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--top", type=int, help="how many of the models that matter (default LLMHIVE_HEALTH_TOP)")
        parser.add_argument(
            "--model", action="append", dest="models", metavar="ID", help="check this model (repeatable)"
        )
        parser.add_argument("--no-ping", action="store_true", help="endpoint status only, no completion")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args, top: int | None, models: list[str] | None, no_ping: bool, json: bool, **options) -> str:
        if top is not None and top < 1:
            raise CommandError("--top must be at least 1")
        try:
            run = run_health_checks(model_ids=models, top=top, ping=not no_ping, trigger=Trigger.COMMAND)
        except HealthCheckError as exc:
            raise CommandError(str(exc)) from None
        checks = list(run.checks.order_by("model_id"))
        if json:
            self.stdout.write(as_json(run, checks))
        else:
            self.table(run, checks)
        if run.models_failed:
            raise SystemExit(1)
        return "" if json else summary(run)

    def table(self, run: HealthCheckRun, checks: list[ModelHealthCheck]) -> None:
        self.stdout.write(f"OpenRouter at {settings.OPENROUTER_BASE_URL}: reachable")
        if run.key_limit_usd is not None or run.key_usage_usd is not None:
            limit = "none" if run.key_limit_usd is None else f"{decimal_str(run.key_limit_usd)} USD"
            self.stdout.write(f"key: limit {limit}, usage {decimal_str(run.key_usage_usd)} USD")
        width = max([len(c.model_id) for c in checks] + [5])
        self.stdout.write(
            f"{'model':<{width}}  {'result':<6}  {'endpoints':>9}  {'uptime':>7}  {'ping':<5}  {'ms':>6}  error"
        )
        for c in checks:
            uptime = f"{c.best_uptime:.1f}%" if c.best_uptime is not None else "-"
            if c.pinged:
                ping = "ok" if c.ping_ok else "FAIL"
            else:
                ping = "skip" if c.error_message.startswith("ping skipped") else "-"
            latency = c.latency_ms if c.latency_ms is not None else "-"
            self.stdout.write(
                f"{c.model_id:<{width}}  {'ok' if c.ok else 'FAIL':<6}  {c.endpoints_up:>4}/{c.endpoints_total:<4}  "
                f"{uptime:>7}  {ping:<5}  {latency:>6}  {c.error_code or c.error_message}"
            )
        if run.models_failed:
            self.stdout.write(summary(run))


def summary(run: HealthCheckRun) -> str:
    line = (
        f"{run.models_checked} checked, {run.models_failed} failed, {run.pinged} pinged "
        f"for {decimal_str(run.ping_spend_usd)} USD ({run.status})"
    )
    return line + (f"; {run.note}" if run.note else "")


def as_json(run: HealthCheckRun, checks: list[ModelHealthCheck]) -> str:
    key = None
    if run.key_limit_usd is not None or run.key_usage_usd is not None:
        key = {"limit_usd": decimal_str(run.key_limit_usd), "usage_usd": decimal_str(run.key_usage_usd)}
    return json.dumps(
        {
            "run": run.pk,
            "status": run.status,
            "openrouter": {"base_url": settings.OPENROUTER_BASE_URL, "reachable": True},
            "key": key,
            "checked": run.models_checked,
            "failed": run.models_failed,
            "pinged": run.pinged,
            "ping_spend_usd": decimal_str(run.ping_spend_usd),
            "note": run.note,
            "models": [
                {
                    "model_id": c.model_id,
                    "ok": c.ok,
                    "endpoints_total": c.endpoints_total,
                    "endpoints_up": c.endpoints_up,
                    "best_uptime": c.best_uptime,
                    "pinged": c.pinged,
                    "ping_ok": c.ping_ok,
                    "latency_ms": c.latency_ms,
                    "http_status": c.http_status,
                    "error_code": c.error_code,
                    "error_message": c.error_message,
                    "ping_cost_usd": decimal_str(c.ping_cost_usd),
                }
                for c in checks
            ],
        },
        indent=2,
    )
