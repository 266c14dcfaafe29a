"""Curating in a real browser: a curator accepts a family suggestion (one edited first) and
rejects another, and an admin subscribes a webhook and sends it a signed test alert."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.contrib.auth.models import User

from catalog.families import refresh_suggestions
from catalog.models import CatalogModel, Family, FamilySuggestion, SuggestionState
from core.models import AlertSubscription
from tests.browser.conftest import PASSWORD, login, messages
from tests.core.test_alert_delivery import Receiver
from tests.factories import CatalogModelFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


def act_on(page, row_text: str, action: str) -> str:
    page.locator("#result_list tbody tr", has_text=row_text).locator("input.action-select").check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    return messages(page)


def test_accept_an_edited_suggestion_and_reject_another(page, admin_user):
    for model_id in ("anthropic/claude-opus-4.8", "anthropic/claude-opus-4.8:extended", "google/gemini-3.5-flash"):
        CatalogModelFactory(id=model_id)
    refresh_suggestions()

    login(page, "admin")
    page.goto("/admin/catalog/familysuggestion/")
    opus = page.locator("#result_list tbody tr", has_text="anthropic/claude-opus-4.8*")
    assert "anthropic/claude-opus-4.8:extended" in opus.inner_text()  # the models it would take

    # Edit before accepting: a name of the curator's own, then accept from the form.
    opus.locator("th a").first.click()
    page.fill("input[name=name]", "Claude Opus 4.8 (all variants)")
    page.select_option("select[name=state]", SuggestionState.ACCEPTED)
    page.click("input[name=_save]")
    assert "Accepted 1 suggestion" in messages(page)
    family = Family.objects.get(name="Claude Opus 4.8 (all variants)")
    assert set(CatalogModel.objects.filter(family=family).values_list("id", flat=True)) == {
        "anthropic/claude-opus-4.8",
        "anthropic/claude-opus-4.8:extended",
    }

    page.goto("/admin/catalog/familysuggestion/")
    assert "Rejected 1 suggestion" in act_on(page, "google/gemini-3.5*", "reject_suggestions")
    refresh_suggestions()  # research again: the rejected pattern stays rejected
    assert not FamilySuggestion.objects.filter(state=SuggestionState.PENDING).exists()
    page.goto("/admin/catalog/familysuggestion/")
    assert page.locator("#result_list tbody tr").count() == 0


def test_subscribe_a_webhook_and_send_it_a_signed_test_alert(page, admin_user):
    receiver = Receiver([])
    try:
        login(page, "admin")
        page.goto("/admin/core/alertsubscription/add/")
        page.fill("input[name=target]", receiver.url)
        page.check("input[name=kinds][value=budget_threshold]")
        page.fill("input[name=secret]", "a-shared-secret")
        page.click("input[name=_save]")
        subscription = AlertSubscription.objects.get()
        assert subscription.kinds == ["budget_threshold"] and subscription.active

        message = act_on(page, receiver.url, "send_test_alert")
        assert f"Test alert sent to {receiver.url}" in message
        (headers, body), *_ = receiver.requests
        expected = "sha256=" + hmac.new(b"a-shared-secret", body, hashlib.sha256).hexdigest()
        assert headers["x-llmhive-signature"] == expected
        assert json.loads(body)["alert"]["kind"]
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
