"""Evaluating routing in a real browser: a draft with a wrong field is refused with the field
named, fixed, evaluated; the chart shows one point per policy; the answer downloads as JSON."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from routing.models import PolicyDraft
from tests.browser.conftest import PASSWORD, login, messages
from tests.factories import ingest
from tests.routing.test_replay import ago, catalog  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


def test_draft_a_policy_fix_it_evaluate_it_and_download_the_answer(page, admin_user, catalog):  # noqa: F811
    ingest(4, model="acme/dear", role="coder", category="programming", occurred_at=ago(1))

    login(page, "admin")
    page.goto("/admin/routing/policydraft/add/")
    assert '"coder"' in page.input_value("#id_policy")  # it starts from the policy in force
    page.fill("#id_name", "thrifty")
    page.fill("#id_policy", '{"roles": {"coder": {"exploration_rate": 2}}}')
    page.click("input[name=_save]")
    assert "roles.coder.exploration_rate: between 0 and 1" in page.locator(".errorlist").inner_text()
    assert not PolicyDraft.objects.exists()

    page.fill("#id_policy", '{"weights": {"balanced": {"quality": 0.2, "reliability": 0.1, "cost": 0.7}}}')
    page.click("input[name=_continue]")
    assert "was added successfully" in messages(page)
    draft = PolicyDraft.objects.get()
    assert draft.updated_by == admin_user

    page.click("#evaluate-draft")
    assert page.locator(f"#id_drafts input[value='{draft.pk}']").is_checked()
    page.click("#evaluate-form input[type=submit]")
    rows = page.locator("#evaluation-result tbody tr")
    names = [rows.nth(i).get_attribute("data-policy") for i in range(rows.count())]
    assert names == ["current", "thrifty", "bootstrap", "cheapest", "top_ranked", "cost_based", "recorded"]
    points = page.locator("#evaluation-chart .policy-point")
    assert sorted(points.nth(i).get_attribute("data-policy") for i in range(points.count())) == sorted(names)

    with page.expect_download() as caught:
        page.click("#download-json")
    answer = json.loads(open(caught.value.path()).read())
    assert answer["requests"] == 4 and [p["name"] for p in answer["policies"]] == names


def test_a_wrong_form_is_a_message_not_an_error_page(page, admin_user, catalog):  # noqa: F811
    login(page, "admin")
    page.goto("/admin/routing/policydraft/evaluate/")
    page.set_input_files("#id_policy_file", files=[{"name": "p.json", "mimeType": "application/json", "buffer": b"{"}])
    page.click("#evaluate-form input[type=submit]")
    assert "File 'p.json': not JSON" in messages(page)
    assert not page.locator("#evaluation-result").count()
