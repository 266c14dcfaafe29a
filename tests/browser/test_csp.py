"""The Content-Security-Policy holds in a real browser: the admin, the dashboard's chart, the export
page, the rankings page and /api/docs (Swagger UI from our own static files) work under it with no
violation, no script error and no request to any other origin (the docs work offline)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from catalog.models import Category
from tests.browser.conftest import PASSWORD, login
from tests.factories import CatalogModelFactory, RoleFactory, RolePreferenceFactory, ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Recorded in the page before any of its own scripts run (init scripts are not subject to the CSP).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${document.location.pathname}: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


@pytest.fixture
def watched(page, live_server):
    """The page, with every CSP report, script error and request to another origin recorded."""
    seen = {"console": [], "errors": [], "elsewhere": [], "pages": []}
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda message: seen["console"].append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))

    def only_ours(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            seen["elsewhere"].append(route.request.url)
            route.abort()

    page.route("**/*", only_ours)

    def check(path_or_none: str | None = None) -> None:
        """Record the current page's violations (after visiting path_or_none, if given)."""
        if path_or_none:
            response = page.goto(path_or_none)
            assert response.status == 200, (path_or_none, response.status)
            policy = response.headers.get("content-security-policy", "")
            assert "script-src 'self' 'unsafe-hashes' 'sha256-" in policy and "frame-ancestors 'none'" in policy, policy
        page.wait_for_load_state("load")
        seen["pages"].append(page.url)
        seen["console"].extend(page.evaluate("window.__cspViolations"))

    page.check_csp = check
    return page, seen


def test_the_admin_the_dashboard_chart_and_the_api_docs_run_under_the_csp(watched, admin_user):
    page, seen = watched
    model = CatalogModelFactory(id="acme/a")
    role = RoleFactory(slug="coder")
    RolePreferenceFactory(role=role, model=model, position=10)
    Category.objects.get_or_create(slug="programming", defaults={"name": "Programming"})
    ingest(
        *[{"role": "coder"}] * 3,
        occurred_at=datetime.now(UTC) - timedelta(hours=2),
        model="acme/a",
        prompt_tokens=1000,
        completion_tokens=100,
        cost_usd=Decimal("0.125"),
    )

    login(page, "admin")
    page.check_csp()
    assert page.locator("#dash-chart svg.cost-chart rect").count() > 0  # the chart is drawn

    page.check_csp("/admin/catalog/catalogmodel/acme/a/change/")
    assert page.locator("#catalogmodel_form").count() == 1

    page.check_csp(f"/admin/routing/role/{role.pk}/change/")
    page.check_csp("/admin/costs/dailycost/")
    assert page.locator("svg.cost-chart").count() == 1

    page.check_csp("/admin/costs/dailycost/export/")
    # django-import-export's "Select all" uses its one inline handler, allowed by hash.
    toggle = page.locator("input.select-toggle")
    toggle.uncheck()
    assert page.locator(".selectable-field-export-row input[type=checkbox]:checked").count() == 0
    toggle.check()
    assert page.locator(".selectable-field-export-row input[type=checkbox]:not(:checked)").count() == 0
    page.check_csp()

    page.check_csp("/admin/rankings/")
    with page.expect_navigation():
        page.select_option("select[name=category]", "programming")
    assert "category=programming" in page.url
    page.check_csp()

    page.check_csp("/api/docs")
    page.wait_for_selector(".swagger-ui .opblock")
    operations = page.locator(".swagger-ui .opblock").count()
    assert operations >= 18, operations
    page.check_csp()

    assert seen["console"] == [], seen["console"]
    assert seen["errors"] == [], seen["errors"]
    assert seen["elsewhere"] == [], seen["elsewhere"]
    print(f"\nCSP: {len(seen['pages'])} page views, {operations} operations in Swagger UI, 0 violations")
