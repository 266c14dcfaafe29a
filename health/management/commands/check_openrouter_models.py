"""manage.py check_openrouter_models [--top N] [--model ID ...] [--no-ping] [--json]

Connectivity to OpenRouter (and the key's limit and usage when a key is set), then each checked
model: endpoints up, best uptime, and a ping. Exit status 1 when a checked model fails."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from health.checks import HealthCheckError, run_health_checks


class Command(BaseCommand):
    help = "Check OpenRouter and the models that matter: endpoint status (free), then a capped ping."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--top", type=int, help="how many of the models that matter (default LLMHIVE_HEALTH_TOP)")
        parser.add_argument("--model", action="append", dest="models", metavar="ID", help="check this model (repeatable)")
        parser.add_argument("--no-ping", action="store_true", help="endpoint status only, no completion")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args, top, models, no_ping, json: bool, **options) -> None:
        if top is not None and top < 1:
            raise CommandError("--top must be at least 1")
        try:
            run = run_health_checks(model_ids=models, top=top, ping=not no_ping, trigger="command")
        except HealthCheckError as exc:
            raise CommandError(str(exc)) from None
        checks = list(run.checks.order_by("model_id"))
        if json:
            self.stdout.write(_json(run, checks))
        else:
            self._table(run, checks)
        if run.models_failed:
            raise SystemExit(1)

    def _table(self, run, checks) -> None:
        if run.key_limit_usd is not None or run.key_usage_usd is not None:
            self.stdout.write(f"key: limit {run.key_limit_usd if run.key_limit_usd is not None else 'none'} USD, "
                              f"usage {run.key_usage_usd} USD")
        width = max([len(c.model_id) for c in checks] + [5])
        self.stdout.write(f"{'model':<{width}}  {'result':<6}  {'endpoints':>9}  {'uptime':>7}  {'ping':<5}  {'ms':>6}  error")
        for c in checks:
            uptime = f"{c.best_uptime:.1f}%" if c.best_uptime is not None else "-"
            ping = "-" if not c.pinged else ("ok" if c.ping_ok else "fail")
            self.stdout.write(
                f"{c.model_id:<{width}}  {'ok' if c.ok else 'FAIL':<6}  {c.endpoints_up:>4}/{c.endpoints_total:<4}  {uptime:>7}  "
                f"{ping:<5}  {c.latency_ms if c.latency_ms is not None else '-':>6}  {c.error_code}"
            )
        summary = f"{run.models_checked} checked, {run.models_failed} failed, {run.pinged} pinged for {run.ping_spend_usd.normalize():f} USD"
        self.stdout.write(summary + (f" ({run.note})" if run.note else ""))


def _json(run, checks) -> str:
    return json.dumps({
        "run": run.pk, "status": run.status, "checked": run.models_checked, "failed": run.models_failed,
        "pinged": run.pinged, "ping_spend_usd": format(run.ping_spend_usd.normalize(), "f"), "note": run.note,
        "key": None if run.key_limit_usd is None and run.key_usage_usd is None else {
            "limit_usd": None if run.key_limit_usd is None else format(run.key_limit_usd.normalize(), "f"),
            "usage_usd": None if run.key_usage_usd is None else format(run.key_usage_usd.normalize(), "f"),
        },
        "models": [
            {"model": c.model_id, "ok": c.ok, "endpoints_total": c.endpoints_total, "endpoints_up": c.endpoints_up,
             "best_uptime": c.best_uptime, "pinged": c.pinged, "ping_ok": c.ping_ok, "latency_ms": c.latency_ms,
             "http_status": c.http_status, "error_code": c.error_code, "error_message": c.error_message,
             "ping_cost_usd": None if c.ping_cost_usd is None else format(c.ping_cost_usd.normalize(), "f")}
            for c in checks
        ],
    }, indent=2)
