"""manage.py evaluate_routing: what the policy in force, a proposed one and the baselines would
have done with the ledger's recent requests (routing.replay).

The parser, the evaluation and the writers (table, JSON, CSV) are separate steps, so another
way of evaluating (a simulation) can be added beside the replay and share the writers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.management.commands._progress import ProgressBars
from routing.policies import Policy, PolicyError
from routing.replay import MAX_DAYS, csv_rows, load_policy, replay

TOP_MODELS = 3


class Command(BaseCommand):
    help = (
        "Replay the recent ledger under the routing policy in force, proposed policies (--policy FILE) and "
        "the baselines: cost, expected success, cost per success, prior share, budget bites, model mix."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=7, help=f"the window: the last N days (1 to {MAX_DAYS})")
        parser.add_argument(
            "--policy",
            action="append",
            default=[],
            metavar="FILE",
            help="a proposed policy as JSON (see docs/ops/evaluating.md); repeat to compare several",
        )
        parser.add_argument("--limit", type=int, default=None, help="replay at most the N most recent events")
        parser.add_argument("--seed", type=int, default=0, help="the seed of exploration's draws")
        parser.add_argument("--json", action="store_true", help="print the answer as JSON")
        parser.add_argument("--csv", metavar="PATH", help="also write one row per policy to PATH")

    def handle(self, *args, **options) -> None:
        answer = self.evaluate(options)
        self.write(answer, options)

    # --- Evaluating ---------------------------------------------------------------------------

    def evaluate(self, options: dict) -> dict:
        days, limit = options["days"], options["limit"]
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days: between 1 and {MAX_DAYS}, not {days}")
        if limit is not None and limit < 1:
            raise CommandError(f"--limit: at least 1, not {limit}")
        policies = [read_policy_file(path) for path in options["policy"]]
        bars = ProgressBars(enabled=not options["json"] and options["verbosity"] > 0)
        try:
            return replay(policies, days=days, limit=limit, seed=options["seed"], progress=bars)
        except PolicyError as exc:
            raise CommandError(f"--policy: {exc}") from None
        finally:
            bars.close()

    # --- Writing ------------------------------------------------------------------------------

    def write(self, answer: dict, options: dict) -> None:
        if options["csv"]:
            write_csv(answer, options["csv"])
        if options["json"]:
            self.stdout.write(json.dumps(answer, indent=2))
        else:
            self.stdout.write(table(answer))


def read_policy_file(path: str) -> Policy:
    """A policy file, read and checked; any fault is one readable line naming the file and field."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"--policy {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return load_policy(text)
    except PolicyError as exc:
        raise CommandError(f"--policy {path}: {exc}") from None


def write_csv(answer: dict, path: str) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows(csv_rows(answer))
    except OSError as exc:
        raise CommandError(f"--csv {path}: cannot write it ({exc.strerror or exc})") from None


def table(answer: dict) -> str:
    """One line per policy, under a line saying what was replayed."""
    window = answer["window"]
    lines = [
        f"{answer['requests']} requests replayed of {answer['events_in_window']} in the last {window['days']} days"
        + (f" (the most recent {answer['requests']})" if answer["sampling"] == "most_recent" else "")
        + (
            "; skipped: " + ", ".join(f"{reason} {count}" for reason, count in answer["skipped"].items())
            if answer["skipped"]
            else ""
        ),
        "",
    ]
    header = ("policy", "cost USD", "exp. success", "USD/success", "prior share", "bites", "unserved", "top models")
    rows = [header]
    for p in answer["policies"]:
        top = ", ".join(f"{model} {share:.0%}" for model, share in list(p["model_mix"].items())[:TOP_MODELS])
        rows.append(
            (
                p["name"],
                p["cost_usd"],
                _figure(p["expected_success"], "{:.1%}"),
                p["cost_per_success_usd"] or "—",
                _figure(p["prior_share"], "{:.0%}"),
                str(p["budget_bites"]),
                str(p["unserved"]),
                top or "—",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return "\n".join(line.rstrip() for line in lines)


def _figure(value: float | None, form: str) -> str:
    return "—" if value is None else form.format(value)
