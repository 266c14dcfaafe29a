"""manage.py evaluate_routing: what the policy in force, a proposed one and the baselines would
have done with the ledger's recent requests (routing.replay), or, with --simulate, how each does
in a simulated world whose truth is known (routing.simulation: success, cost, regret against the
oracle, the reaction to an outage).

The parser, the evaluation and the writers (table, JSON, CSV) are separate steps.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.management.commands._progress import ProgressBars
from costs.csvsafe import escape_row
from routing.policies import Policy, PolicyError
from routing.replay import MAX_DAYS, csv_rows, load_policy, replay
from routing.simulation import MAX_REQUESTS, format_table, simulate

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
        parser.add_argument(
            "--seed", type=int, default=0, help="the seed of exploration's draws (and of the simulated world)"
        )
        parser.add_argument(
            "--simulate",
            action="store_true",
            help="simulate instead of replaying: a seeded world with hidden success rates (docs/ops/evaluating-simulation.md)",
        )
        parser.add_argument(
            "--requests", type=int, default=2000, help=f"with --simulate: the requests simulated (1 to {MAX_REQUESTS})"
        )
        parser.add_argument("--no-outage", action="store_true", help="with --simulate: inject no outage")
        parser.add_argument("--json", action="store_true", help="print the answer as JSON")
        parser.add_argument("--csv", metavar="PATH", help="also write one row per policy to PATH")

    def handle(self, *args, **options) -> None:
        if options["simulate"]:
            answer = self.simulate(options)
            self.write(answer, options, csv_of=simulation_csv_rows, table_of=format_table)
        else:
            answer = self.evaluate(options)
            self.write(answer, options)

    def simulate(self, options: dict) -> dict:
        requests = options["requests"]
        if not 1 <= requests <= MAX_REQUESTS:
            raise CommandError(f"--requests: between 1 and {MAX_REQUESTS}, not {requests}")
        if options["limit"] is not None:
            raise CommandError("--limit: the replay's, not the simulation's (use --requests)")
        policies = [read_policy_file(path) for path in options["policy"]]
        try:
            return simulate(seed=options["seed"], requests=requests, policies=policies, outage=not options["no_outage"])
        except ValueError as exc:  # PolicyError included: one line naming what is wrong
            raise CommandError(f"--simulate: {exc}") from None

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

    def write(self, answer: dict, options: dict, *, csv_of=None, table_of=None) -> None:
        if options["csv"]:
            write_csv(answer, options["csv"], rows=csv_of or csv_rows)
        if options["json"]:
            self.stdout.write(json.dumps(answer, indent=2))
        else:
            self.stdout.write((table_of or table)(answer))


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


def write_csv(answer: dict, path: str, rows=csv_rows) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows(rows(answer))
    except OSError as exc:
        raise CommandError(f"--csv {path}: cannot write it ({exc.strerror or exc})") from None


SIMULATION_COLUMNS = (
    "name",
    "success_rate",
    "expected_success",
    "cost_usd",
    "cost_per_success_usd",
    "regret",
    "unrouted",
)


def simulation_csv_rows(answer: dict):
    """The simulation as CSV: one row per policy, the outage's figures and the model mix last."""
    yield [*SIMULATION_COLUMNS, "sent_to_failing", "seconds_to_cooldown", "half_open_tries", "model_mix"]
    for policy in answer["policies"]:
        outage = policy["outage"]
        mix = "; ".join(f"{model}:{count}" for model, count in policy["model_mix"].items())
        yield escape_row(
            [
                *(policy[c] for c in SIMULATION_COLUMNS),
                outage["sent_to_failing"],
                outage["seconds_to_cooldown"],
                outage["half_open_tries"],
                mix,
            ]
        )


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
    header = (
        "policy",
        "cost USD",
        "exp. success",
        "USD/success",
        "prior share",
        "bites",
        "unserved",
        "cooldown trips",
        "top models",
    )
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
                "—" if p["cooldown_trips"] is None else str(p["cooldown_trips"]),
                top or "—",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return "\n".join(line.rstrip() for line in lines)


def _figure(value: float | None, form: str) -> str:
    return "—" if value is None else form.format(value)
