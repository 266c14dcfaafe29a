"""Every admin list page at 1,400 × 900 in a real Chromium: its key columns are inside the window,
every same-origin link on it answers, and the cost chart's labels neither overlap nor get cut.

A screenshot of each list page goes to the test's tmp_path (pytest prints where on failure).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urljoin, urlsplit

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from catalog.models import CategoryRanking, PriceChange
from costs.models import GenerationCheck, UsageEvent
from health.models import HealthCheckRun, ModelHealthCheck, ModelReliability
from routing.models import ModelCooldown, PolicyDraft, QualityPrior, StrategyStat
from tests.browser.conftest import PASSWORD, login
from tests.factories import (
    AlertDeliveryFactory,
    AlertFactory,
    AlertSubscriptionFactory,
    ApiKeyFactory,
    BudgetFactory,
    CatalogModelFactory,
    CategoryFactory,
    EscalationOverrideFactory,
    FamilyFactory,
    FamilySuggestionFactory,
    RoleFactory,
    RolePreferenceFactory,
    StrategyFactory,
    SyncRunFactory,
    ingest,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH, HEIGHT = 1400, 900
LONG_ID = "nousresearch/hermes-3-llama-3.1-405b-instruct-extended-context-preview:extended"
LONG_TEXT = (
    "OpenRouter answered 502 Bad Gateway for https://openrouter.ai/api/v1/models?supported_parameters="
    "tools,reasoning,structured_outputs after 3 retries; the previous catalog stays in use until the next sync"
)

# What a person opens each list page for: these columns must be inside the window. Every
# registered admin is listed, so that a new one is checked too (the test fails on one missing).
KEY_COLUMNS = {
    "auth.user": ("username", "is_staff"),
    "auth.group": ("__str__",),
    "axes.accessattempt": ("attempt_time", "username", "status"),
    "axes.accesslog": ("attempt_time", "username", "logout_time"),
    "axes.accessfailurelog": ("attempt_time", "username", "locked_out"),
    "django_q.schedule": ("name", "func", "next_run", "get_success"),
    "django_q.success": ("name", "func", "time_taken"),
    "django_q.failure": ("name", "func", "short_result"),
    "django_q.ormq": ("key", "task_id"),
    "core.apikey": ("name", "scope_list", "revoked"),
    "core.alert": ("kind", "model_id", "short_message", "acknowledged"),
    "core.alertsubscription": ("target", "kind_list", "active", "delivered", "failed"),
    "core.alertdelivery": ("created_at", "alert_summary", "status", "attempts", "short_error"),
    "catalog.family": ("slug", "pattern", "priority", "model_count"),
    "catalog.category": ("slug", "state", "active"),
    "catalog.familysuggestion": ("slug", "pattern", "model_count", "state"),
    "catalog.catalogmodel": ("id", "prompt_per_million", "completion_per_million", "status", "enabled"),
    "catalog.syncrun": ("kind", "coloured_status", "started_at", "price_changes", "short_error"),
    "catalog.categoryranking": ("category", "rank", "model"),
    "costs.usageevent": ("occurred_at", "model_ref", "success", "cost", "error"),
    "costs.dailycost": ("day", "model", "requests", "successes", "cost", "per_success"),
    "costs.budget": ("name", "limit", "spent", "remaining", "state", "active"),
    "costs.generationcheck": ("checked_at", "model", "status", "difference"),
    "health.healthcheckrun": ("started_at", "coloured_status", "models_failed", "ping_spend"),
    "health.modelhealthcheck": ("checked_at", "model", "ok", "latency_ms", "ping_cost"),
    "health.modelreliability": ("model", "reliability_percent", "consecutive_failures", "last_error"),
    "routing.role": ("slug", "capability_list", "preference_list", "active"),
    "routing.escalationoverride": ("from_model", "to_model", "role"),
    "routing.qualityprior": ("model", "score", "source"),
    "routing.strategy": ("slug", "requests", "success_rate", "cost"),
    "routing.strategystat": ("model", "role", "requests", "rate", "cost"),
    "routing.modelcooldown": ("model", "shown", "until"),
    "routing.policydraft": ("name", "updated_at", "evaluate_link"),
}

# Same-origin links checked, at most: the list pages have hundreds of filter and sort links that
# lead to the same views; each path is asked once, the list pages themselves are not asked again.
MAX_LINKS = 120


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


def fill_every_list() -> None:
    """A row or more in each list, with the long values real data has (model ids, errors)."""
    family = FamilyFactory(slug="hermes-3-llama-extended", name="Hermes 3 Llama", pattern="nousresearch/hermes-3-*")
    category = CategoryFactory(slug="programming-and-technical-writing")
    model = CatalogModelFactory(
        id=LONG_ID, family=family, price_prompt=Decimal("0.000021"), price_completion=Decimal("0.0000015")
    )
    plain = CatalogModelFactory(id="acme/plain")
    run = SyncRunFactory(status="failed", error=LONG_TEXT)
    PriceChange.objects.create(model=model, field="prompt", old=Decimal("0.00002"), new=Decimal("0.000021"), run=run)
    CategoryRanking.objects.create(category=category, rank=1, model=model, observed_at=timezone.now(), run=run)
    AlertFactory(model_id=LONG_ID, message=LONG_TEXT)
    subscription = AlertSubscriptionFactory(
        target="https://hooks.example.com/services/T0000/B0000/llmhive-alerts-for-the-platform-team", kinds=[]
    )
    AlertDeliveryFactory(subscription=subscription, status="failed", attempts=5, last_error=LONG_TEXT)
    FamilySuggestionFactory(pattern="nousresearch/hermes-3-llama-3.1*", slug="hermes-3-llama-3-1", model_ids=[LONG_ID])
    ApiKeyFactory(name="finance dashboard (read-only, reports and telemetry)", scopes=["route", "usage:write"])
    role = RoleFactory(slug="code-reviewer-with-long-context", required_capabilities=["supports_tools"])
    RolePreferenceFactory(role=role, model=model)
    EscalationOverrideFactory(from_model=plain, to_model=model, role=role)
    StrategyFactory(slug="cascade-cheap-then-strong", description=LONG_TEXT)
    QualityPrior.objects.create(model=model, score=0.8, source="LMArena text", as_of=timezone.now().date())
    BudgetFactory(name="monthly engineering budget", limit_usd=Decimal("400"))
    today = datetime.now(UTC) - timedelta(hours=1)
    ingest(
        *[
            {
                "model": LONG_ID,
                "role": role.slug,
                "strategy": "cascade-cheap-then-strong",
                "occurred_at": today - timedelta(days=i),
                "cost_usd": "0.0125",
                "success": i % 3 != 0,
                **({} if i % 3 else {"error": "rate_limited"}),
            }
            for i in range(30)
        ]
    )
    GenerationCheck.objects.create(
        event=UsageEvent.objects.filter(model_ref=LONG_ID).first(),
        generation_id="gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG",
        model=LONG_ID,
        status="drift",
        attempts=2,
        ledger_cost_usd=Decimal("0.0125"),
        openrouter_cost_usd=Decimal("0.01312"),
        difference_usd=Decimal("0.00062"),
        native_prompt_tokens=1234,
        native_completion_tokens=56,
    )
    StrategyStat.objects.get_or_create(
        model=LONG_ID, role=role.slug, strategy="cascade-cheap-then-strong", defaults={"requests": 3, "successes": 2}
    )
    health_run = HealthCheckRun.objects.create(status="failed", models_checked=2, models_failed=1, error=LONG_TEXT)
    ModelHealthCheck.objects.create(
        run=health_run, model=model, ok=False, error_code="provider_error", error_message=LONG_TEXT
    )
    ModelReliability.objects.create(
        model=model, reliability=0.5, consecutive_failures=2, last_checked_at=timezone.now(), last_error=LONG_TEXT
    )
    ModelCooldown.objects.create(model=LONG_ID, role=role.slug, state="open", reason=LONG_TEXT)
    PolicyDraft.objects.create(name="cheaper coder, exploring ten percent of the time", notes=LONG_TEXT)
    # The pages of the libraries (django-q2, axes) are in the same admin.
    now = timezone.now()
    Schedule.objects.create(name="catalog sync (hourly)", func="catalog.tasks.sync_catalog_task", next_run=now)
    for ok in (True, False):
        Task.objects.create(
            id=f"task-{ok}",
            name=f"health checks {ok}",
            func="health.tasks.run_health_checks_task",
            started=now,
            stopped=now,
            success=ok,
            result=LONG_TEXT,
        )
    OrmQ.objects.create(key="llmhive", payload="x", lock=now)
    access = {"user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "ip_address": "127.0.0.1", "path_info": "/admin/login/"}
    AccessAttempt.objects.create(username="mallory", get_data="", post_data="", failures_since_start=3, **access)
    AccessFailureLog.objects.create(username="mallory", locked_out=True, **access)
    AccessLog.objects.create(username="admin", **access)


def view_of(path: str) -> str:
    """The view a path leads to: the rows of a list lead to one change view, asked once
    (/admin/app/model/<pk>/change/)."""
    parts = path.split("/")
    if len(parts) > 5 and parts[1] == "admin" and parts[4] != "add":
        parts[4] = "<pk>"
    return "/".join(parts)


def changelists() -> list[tuple[str, str]]:
    return sorted(
        (model._meta.label_lower, reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
        for model in admin.site._registry
    )


@pytest.fixture
def wide_page(browser, live_server, admin_user):
    """A signed-in admin's tab, 1,400 × 900, over lists that all have rows."""
    fill_every_list()
    context = browser.new_context(base_url=live_server.url, viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    page.set_default_timeout(15_000)
    login(page, "admin")
    yield page
    context.close()


def test_every_list_page_shows_its_key_columns_at_1400_px(wide_page, tmp_path):
    page = wide_page
    pages = changelists()
    assert {label for label, _ in pages} == set(KEY_COLUMNS), "a list page without key columns named here"
    cut_off = {}
    for label, url in pages:
        response = page.goto(url)
        assert response.status == 200, f"{url} answered {response.status}"
        page.screenshot(path=str(tmp_path / f"{label}.png"))
        # Inside the window and inside the list's own box: the admin scrolls a wide table
        # within it, so a column past its right edge is out of sight too.
        visible, edges = page.evaluate(
            """(names) => {
                const table = document.querySelector('#result_list');
                const box = table.closest('.results') || table.parentElement;
                const visible = Math.min(window.innerWidth, box.getBoundingClientRect().right);
                return [visible, Object.fromEntries(names.map((name) => {
                    const th = table.querySelector(`thead th.column-${name}`);
                    return [name, th ? th.getBoundingClientRect().right : null];
                }))];
            }""",
            list(KEY_COLUMNS[label]),
        )
        missing = [name for name, right in edges.items() if right is None]
        assert not missing, f"{url}: no column {missing} (renamed? update KEY_COLUMNS)"
        outside = {name: round(right) for name, right in edges.items() if right > visible + 1}
        if outside:
            cut_off[url] = outside
    assert not cut_off, f"key columns out of sight at {WIDTH} px (screenshots in {tmp_path}): {cut_off}"


def test_no_same_origin_link_on_a_list_page_or_the_dashboard_leads_to_an_error(wide_page, live_server):
    page = wide_page
    origin = urlsplit(live_server.url).netloc
    visited, links = set(), {}
    # the dashboard and the site's own pages too
    extra = [reverse("admin:index"), reverse("admin:capability_matrix"), reverse("admin:category_rankings")]
    for url in [url for _, url in changelists()] + extra:
        page.goto(url, wait_until="domcontentloaded")
        visited.add(url)
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map((a) => a.getAttribute('href'))")
        for href in hrefs:
            target = urljoin(live_server.url + url, href)
            parts = urlsplit(target)
            if parts.netloc == origin and parts.scheme in ("http", "https"):
                links.setdefault(view_of(parts.path), (target, url))

    assert "/api/docs" in links, "View site should lead to the API docs, not to / (a 404)"
    to_check = [(view, found) for view, found in links.items() if view not in visited][:MAX_LINKS]
    broken = {}
    for _, (target, found_on) in to_check:
        answer = page.context.request.get(target, max_redirects=0)
        if answer.status >= 400:
            broken[target] = (answer.status, found_on)
    assert not broken, f"links that answer an error: {broken}"


def test_the_cost_chart_labels_do_not_overlap_and_the_legend_is_whole(browser, live_server, admin_user):
    """Seven series with long names over 30 days: the day labels (the last two used to overlap)
    and the legend (its amounts were cut at the right edge)."""
    today = datetime.now(UTC) - timedelta(hours=1)
    names = [f"{LONG_ID}-{i}" for i in range(8)]
    ingest(
        *[
            {"model": name, "occurred_at": today - timedelta(days=day), "cost_usd": str(1234 + 100 * i)}
            for i, name in enumerate(names)
            for day in range(0, 30, 2)
        ]
    )
    context = browser.new_context(base_url=live_server.url, viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    try:
        login(page, "admin")
        page.goto(reverse("admin:costs_dailycost_changelist"))
        found = page.evaluate(
            """() => {
                const svg = document.querySelector('svg.cost-chart');
                const box = svg.getBoundingClientRect();
                const rect = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; };
                const days = [...svg.querySelectorAll('text[text-anchor=middle]')].map(rect);
                const legend = [...svg.querySelectorAll('text:not([text-anchor])')].map((el) => ({
                    text: el.textContent, right: el.getBoundingClientRect().right,
                }));
                return {svg: [box.left, box.right], days, legend};
            }"""
        )
    finally:
        context.close()

    days = sorted(found["days"])
    assert len(days) >= 4
    for (_, right, _, _), (left, _, _, _) in zip(days, days[1:], strict=False):
        assert right <= left, f"day labels overlap: {days}"
    svg_right = found["svg"][1]
    assert len(found["legend"]) == 7  # six models and "other"
    for entry in found["legend"]:
        assert entry["right"] <= svg_right, f"legend cut at the chart's edge: {entry}"
        assert entry["text"].rsplit(" ", 1)[1].startswith("$"), entry  # its amount is there, whole
    assert any(entry["text"].endswith(".00") and "," in entry["text"] for entry in found["legend"])
