"""The admin's "Evaluate routing" page: the replay of routing.replay for the policy in force,
drafts (routing.PolicyDraft) and an uploaded policy file, against the baselines; a table, a chart
of cost against expected success drawn as inline SVG on the server (no script, nothing from the
network), and the answer to download as JSON or CSV.

A fault in the form, a draft or the file is a message on the page, never a 500. The answer of
the last evaluation is kept in the session for the downloads, so downloading does not replay.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from costs.charts import nice_ceiling
from routing.models import PolicyDraft
from routing.policies import Policy, PolicyError
from routing.replay import MAX_DAYS, csv_rows, load_policy, replay
from routing.snapshot import current_snapshot

SESSION_KEY = "routing_evaluation"
MAX_FILE_BYTES = 1_000_000


class EvaluateForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=MAX_DAYS, initial=7, help_text="The window: the last N days.")
    drafts = forms.ModelMultipleChoiceField(
        queryset=PolicyDraft.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Drafts to compare with the policy in force and the baselines.",
    )
    policy_file = forms.FileField(required=False, label="Policy file", help_text="A policy as JSON (optional).")
    seed = forms.IntegerField(initial=0, help_text="The seed of exploration's draws.")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # (a field of its own per form: the ceiling is a setting, read when the page is asked for)
        ceiling = settings.LLMHIVE_EVALUATION_MAX_EVENTS
        self.fields["limit"] = forms.IntegerField(
            min_value=1,
            max_value=ceiling,
            initial=ceiling,
            help_text=f"At most this many events, the most recent (up to {ceiling:,}, so the page answers in seconds).",
        )
        self.order_fields(["days", "drafts", "policy_file", "limit", "seed"])

    def clean_policy_file(self):
        upload = self.cleaned_data.get("policy_file")
        if upload and upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(f"The file is {upload.size:,} bytes: at most {MAX_FILE_BYTES:,}.")
        return upload

    def policies(self) -> list[Policy]:
        """The drafts and the file as policies, each checked: PolicyError says which and where."""
        policies = []
        for draft in self.cleaned_data["drafts"]:
            try:
                policy = load_policy(draft.policy)
            except PolicyError as exc:
                raise PolicyError("", f"Draft '{draft.name}': {exc}") from None
            policies.append(dataclasses.replace(policy, name=draft.name))
        upload = self.cleaned_data.get("policy_file")
        if upload:
            try:
                policies.append(load_policy(upload.read()))
            except PolicyError as exc:
                raise PolicyError("", f"File '{upload.name}': {exc}") from None
        return policies


def evaluate_view(request: HttpRequest, context: dict) -> HttpResponse:
    """GET: the form (?draft=<id> ticks a draft); POST: evaluate and show the result."""
    answer = None
    if request.method == "POST":
        form = EvaluateForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                data = form.cleaned_data
                answer = replay(form.policies(), days=data["days"], limit=data["limit"], seed=data["seed"])
            except PolicyError as exc:
                messages.error(request, str(exc))
            else:
                request.session[SESSION_KEY] = answer
        else:
            for field, errors in form.errors.items():
                label = form.fields[field].label or field.replace("_", " ") if field in form.fields else ""
                for error in errors:
                    messages.error(request, f"{label.capitalize()}: {error}" if label else error)
    else:
        drafts = [d for d in request.GET.getlist("draft") if d.isdigit()]
        form = EvaluateForm(initial={"drafts": PolicyDraft.objects.filter(pk__in=drafts)})
    return render(
        request,
        "admin/routing/evaluate.html",
        {
            **context,
            "title": "Evaluate routing",
            "form": form,
            "answer": answer,
            "chart": policy_chart_svg(answer["policies"]) if answer else None,
        },
    )


def download_view(request: HttpRequest, fmt: str) -> HttpResponse:
    """The last evaluation of this session, as JSON or CSV."""
    answer = request.session.get(SESSION_KEY)
    if answer is None:
        messages.warning(request, "Nothing to download yet: evaluate first.")
        return redirect(reverse("admin:routing_policydraft_evaluate"))
    if fmt == "json":
        response = HttpResponse(json.dumps(answer, indent=2), content_type="application/json")
    else:
        out = io.StringIO()
        csv.writer(out).writerows(csv_rows(answer))
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="routing-evaluation.{fmt}"'
    return response


# --- The chart ------------------------------------------------------------------------------------

WIDTH, HEIGHT = 760, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 16, 44
COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
LOG_RATIO = 20  # costs further apart than this are drawn on a log scale


def policy_chart_svg(policies: list[dict]) -> SafeString:
    """Cost (x) against expected success (y), one labelled point per policy with a cost and an
    expected success. Costs spread over orders of magnitude (the cheapest model against the
    best) go on a log scale, which the axis says."""
    points = [
        (p["name"], float(Decimal(p["cost_usd"])), p["expected_success"])
        for p in policies
        if p["cost_usd"] is not None and p["expected_success"] is not None
    ]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    costs = [c for _, c, _ in points]
    positive = [c for c in costs if c > 0]
    log = bool(positive) and max(positive) / min(positive) > LOG_RATIO
    if log:
        low, high = math.log10(min(positive)), math.log10(max(positive))
        low, high = math.floor(low), math.ceil(high) if math.ceil(high) > math.floor(low) else math.floor(low) + 1

        def x_of(cost: float) -> float:
            value = math.log10(cost) if cost > 0 else low
            return LEFT + (value - low) / (high - low) * plot_w

        ticks = [(10**e, f"${_money(10**e)}") for e in range(low, high + 1)]
    else:
        top = nice_ceiling(max(costs, default=0.0))

        def x_of(cost: float) -> float:
            return LEFT + cost / top * plot_w

        ticks = [(top * i / 4, f"${_money(top * i / 4)}") for i in range(5)]

    def y_of(success: float) -> float:
        return TOP + (1.0 - success) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="evaluation-chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Cost against expected success, one point per policy" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>',
    ]
    for i in range(6):
        share = i / 5
        y = y_of(share)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{share:.0%}</text>')
    for value, label in ticks:
        x = x_of(value)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#eee"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" fill="#555">{escape(label)}</text>'
        )
    axis = "cost in USD (log scale)" if log else "cost in USD"
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{axis}</text>')
    parts.append(
        f'<text x="14" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">expected success</text>'
    )
    placed: list[tuple[float, float]] = []
    for i, (name, cost, success) in enumerate(points):
        x, y = x_of(cost), y_of(success)
        colour = COLOURS[i % len(COLOURS)]
        # Policies that land on (nearly) the same spot stack their labels, one line each.
        stacked = sum(1 for px, py in placed if abs(px - x) < 6 and abs(py - y) < 6)
        placed.append((x, y))
        parts.append(
            f'<g class="policy-point" data-policy="{escape(name)}">'
            f"<title>{escape(name)}: ${_money(cost)}, {success:.1%} expected success</title>"
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" fill-opacity="0.8" stroke="#333" '
            'stroke-width="0.5"/>'
            f'<text x="{x + 8:.1f}" y="{y + 4 + 13 * stacked:.1f}" fill="{colour}" font-weight="bold">'
            f"{escape(name)}</text></g>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _money(value: float) -> str:
    if value >= 1:
        return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
    return f"{value:.3g}"


def policy_in_force_text() -> str:
    """The roles' settings in force, as a policy's JSON: where a new draft starts from."""
    snap = current_snapshot()
    roles = {}
    for slug, role in sorted(snap.roles.items()):
        changes: dict = {"default_accuracy": role.default_accuracy, "exploration_rate": role.exploration_rate}
        if role.default_category:
            changes["default_category"] = role.default_category
        changes["preferences"] = [
            model_id if model_id else f"family:{snap.families.get(family_id, '?')}"
            for model_id, family_id in role.preferences
        ]
        changes["required_capabilities"] = sorted(role.required)
        changes["allow_free"] = role.allow_free
        roles[slug] = changes
    return json.dumps({"roles": roles, "learn": True}, indent=2)
