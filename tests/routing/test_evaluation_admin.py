"""The admin's "Evaluate routing" page and policy drafts, through the test client: who may see it,
faults as messages, the downloads, the draft form naming the wrong field."""

from __future__ import annotations

import csv
import io
import json
from http import HTTPStatus

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from routing.admin_evaluate import policy_chart_svg
from routing.models import PolicyDraft
from tests.factories import ingest
from tests.routing.test_replay import ago, catalog  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db
EVALUATE = "admin:routing_policydraft_evaluate"


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_only_users_who_may_view_routing_see_the_page(client, catalog):  # noqa: F811
    user = User.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(reverse(EVALUATE)).status_code == HTTPStatus.FORBIDDEN
    user.user_permissions.add(Permission.objects.get(codename="view_policydraft"))
    assert client.get(reverse(EVALUATE)).status_code == HTTPStatus.OK


def test_evaluate_a_draft_then_download_json_and_csv(admin_client, catalog, settings):  # noqa: F811
    settings.LLMHIVE_EVALUATION_MAX_EVENTS = 2
    ingest(3, model="acme/dear", role="coder", category="programming", occurred_at=ago(1))
    draft = PolicyDraft.objects.create(name="blind", policy='{"learn": false}')
    page = admin_client.get(reverse(EVALUATE), {"draft": draft.pk})
    assert page.context["form"].initial["drafts"].get() == draft
    response = admin_client.post(reverse(EVALUATE), {"days": 7, "drafts": [draft.pk], "limit": 2, "seed": 0})
    answer = response.context["answer"]
    assert answer["requests"] == 2 and answer["events_in_window"] == 3  # the page's ceiling
    assert response.content.decode().count('class="policy-point"') == len(answer["policies"]) == 7

    downloaded = json.loads(admin_client.get(reverse(EVALUATE + "_download", args=["json"])).content)
    assert downloaded == answer
    rows = list(
        csv.reader(io.StringIO(admin_client.get(reverse(EVALUATE + "_download", args=["csv"])).content.decode()))
    )
    assert rows[0][0] == "name" and [r[0] for r in rows[1:]] == [p["name"] for p in answer["policies"]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"days": 400, "limit": 2, "seed": 0}, "Days: Ensure this value is less than or equal to 365."),
        ({"days": 7, "limit": 3, "seed": 0}, "Limit: Ensure this value is less than or equal to 2."),
    ],
)
def test_a_wrong_form_is_a_message(admin_client, catalog, settings, data, message):  # noqa: F811
    settings.LLMHIVE_EVALUATION_MAX_EVENTS = 2
    response = admin_client.post(reverse(EVALUATE), data)
    assert response.status_code == HTTPStatus.OK and message in messages_of(response)
    assert response.context["answer"] is None


def test_a_draft_gone_wrong_is_a_message_naming_it(admin_client, catalog):  # noqa: F811
    # Saved when the role existed; the role is gone now.
    draft = PolicyDraft.objects.create(name="old", policy='{"roles": {"writer": {}}}')
    response = admin_client.post(reverse(EVALUATE), {"days": 7, "drafts": [draft.pk], "limit": 10, "seed": 0})
    assert messages_of(response) == ["Draft 'old': roles.writer: no active role 'writer'"]


def test_nothing_to_download_before_an_evaluation(admin_client, db):
    response = admin_client.get(reverse(EVALUATE + "_download", args=["json"]), follow=True)
    assert "Nothing to download yet" in messages_of(response)[0]


def test_the_draft_form_names_the_wrong_field_and_starts_from_the_policy_in_force(admin_client, catalog):  # noqa: F811
    add = reverse("admin:routing_policydraft_add")
    assert json.loads(admin_client.get(add).context["adminform"].form.initial["policy"])["roles"]["coder"]
    response = admin_client.post(add, {"name": "x", "policy": '{"budgets": [{"name": "m", "limit_usd": 5.5}]}'})
    assert "budgets.0.limit_usd" in str(response.context["adminform"].form.errors["policy"])
    assert not PolicyDraft.objects.exists()


def test_the_chart_puts_the_cheaper_policy_left_and_the_better_one_higher():
    svg = policy_chart_svg(
        [
            {"name": "a", "cost_usd": "1", "expected_success": 0.9},
            {"name": "b", "cost_usd": "3", "expected_success": 0.5},
            {"name": "<c>", "cost_usd": "2", "expected_success": None},
        ]
    )
    assert svg.count('class="policy-point"') == 2 and "<c>" not in svg
    a = svg.split('data-policy="a"')[1].split("<circle")[1]
    b = svg.split('data-policy="b"')[1].split("<circle")[1]
    x = lambda part: float(part.split('cx="')[1].split('"')[0])  # noqa: E731
    y = lambda part: float(part.split('cy="')[1].split('"')[0])  # noqa: E731
    assert x(a) < x(b) and y(a) < y(b)  # (SVG's y grows downward)
