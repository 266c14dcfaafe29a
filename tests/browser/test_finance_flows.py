"""A Finance user in a real browser: downloads the daily cost CSV, and is refused a model's
change page."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User

from llmhive_site.groups import FINANCE
from tests.browser.conftest import PASSWORD, login
from tests.factories import CatalogModelFactory, ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def finance_user(db):
    user = User.objects.create_user("fiona", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=FINANCE))
    return user


def test_finance_downloads_the_daily_cost_csv_and_is_refused_a_model_page(page, finance_user, tmp_path):
    CatalogModelFactory(id="acme/a")
    ingest(
        *[{"role": role} for role in ["coder", "=cmd|' /C calc'!A0", "writer"]],
        occurred_at=datetime.now(UTC) - timedelta(hours=2),
        model="acme/a",
        prompt_tokens=1000,
        completion_tokens=100,
        cost_usd=Decimal("0.125"),
    )

    login(page, "fiona")
    page.goto("/admin/costs/dailycost/")
    assert page.locator("svg.cost-chart").count() == 1
    page.click("a.export_link")
    export_form = page.locator("#content form")
    assert "csv" in export_form.inner_text()  # the one format offered
    with page.expect_download() as info:
        export_form.locator("[type=submit]").click()
    target = tmp_path / "daily.csv"
    info.value.save_as(target)
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["role"] for r in rows) == sorted(["coder", "'=cmd|' /C calc'!A0", "writer"])
    assert {r["cost_usd"] for r in rows} == {"0.125"} and {r["tokens"] for r in rows} == {"1100"}

    response = page.goto("/admin/catalog/catalogmodel/acme/a/change/")
    assert response.status == 403
