"""The health admin: runs with their checks, per-model history, reliability, and "Run health
checks now" (a button and an action) that queue the same task the schedule runs."""

from __future__ import annotations

from decimal import Decimal
from http import HTTPStatus

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from health.checks import run_health_checks
from health.models import HealthCheckRun
from llmhive_site.groups import CURATORS, FINANCE
from tests.factories import CatalogModelFactory
from tests.health.conftest import DOWN, UP, completion, ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def many(db, fake_openrouter, fast, no_key):
    """A run of 30 checks (a few failing), so that a query per row would show."""
    made = [
        CatalogModelFactory(
            id=f"acme/many-{i:02}", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002")
        )
        for i in range(30)
    ]
    for i, m in enumerate(made):
        fake_openrouter.set_endpoints(m.id, [DOWN] if i % 7 == 0 else [UP, DOWN])
        fake_openrouter.set_chat(m.id, completion(m.id))
    return run_health_checks(model_ids=ids(made))


def queued_tasks() -> list[dict]:
    from django_q.models import OrmQ

    return [q.task for q in OrmQ.objects.order_by("id")]


@pytest.mark.parametrize(
    "page",
    [
        "admin:health_healthcheckrun_changelist",
        "admin:health_healthcheckrun_change",
        "admin:health_modelhealthcheck_changelist",
        "admin:health_modelreliability_changelist",
    ],
)
def test_the_pages_render_without_a_query_per_row(admin_client, many, page, django_assert_max_num_queries):
    url = reverse(page, args=[many.pk]) if page.endswith("_change") else reverse(page)

    with django_assert_max_num_queries(15):  # 30 rows on each page
        response = admin_client.get(url)

    assert response.status_code == HTTPStatus.OK
    assert "acme/many-00" in response.content.decode() or page.endswith("healthcheckrun_changelist")


def test_the_run_page_lists_every_check_of_the_run(admin_client, many):
    page = admin_client.get(reverse("admin:health_healthcheckrun_change", args=[many.pk])).content.decode()

    assert all(f"acme/many-{i:02}" in page for i in range(30))
    assert "no_endpoint_up" in page


def test_the_history_of_one_model_is_one_click_away(admin_client, many):
    run_health_checks(model_ids=["acme/many-01", "acme/many-02"])
    reliability = admin_client.get(reverse("admin:health_modelreliability_changelist")).content.decode()
    history_url = reverse("admin:health_modelhealthcheck_changelist") + "?model=acme/many-01"
    assert f'href="{history_url}"' in reliability

    page = admin_client.get(history_url)

    assert page.status_code == HTTPStatus.OK
    assert list(page.context["cl"].queryset.values_list("model_id", flat=True)) == ["acme/many-01"] * 2
    failed_only = admin_client.get(reverse("admin:health_modelhealthcheck_changelist") + "?ok__exact=0")
    assert {c.model_id for c in failed_only.context["cl"].queryset} == {f"acme/many-{i:02}" for i in range(0, 30, 7)}


def test_run_now_queues_the_health_checks_task(admin_client):
    page = admin_client.get(reverse("admin:health_healthcheckrun_changelist")).content.decode()
    assert 'id="run-health-checks"' in page
    assert admin_client.get(reverse("admin:health_run_now")).status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert queued_tasks() == []

    response = admin_client.post(reverse("admin:health_run_now"), follow=True)

    assert "Health checks queued" in response.content.decode()
    [task] = queued_tasks()
    assert task["func"] == "health.tasks.run_health_checks_task" and task["kwargs"] == {"trigger": "admin"}


def test_the_action_queues_checks_of_the_selected_models_and_the_task_runs_them(admin_client, many, fake_openrouter):
    response = admin_client.post(
        reverse("admin:health_modelreliability_changelist"),
        {"action": "run_checks", "_selected_action": ["acme/many-03", "acme/many-07"]},
        follow=True,
    )

    assert "Health checks of 2 models queued" in response.content.decode()
    [task] = queued_tasks()
    assert task["func"] == "health.tasks.run_health_checks_task"
    assert task["kwargs"]["trigger"] == "admin" and sorted(task["kwargs"]["model_ids"]) == [
        "acme/many-03",
        "acme/many-07",
    ]

    from health.tasks import run_health_checks_task

    summary = run_health_checks_task(**task["kwargs"])  # what the worker will do

    run = HealthCheckRun.objects.first()
    assert summary.startswith(f"health run #{run.pk} degraded: 2 checked, 1 failed")
    assert (run.trigger, sorted(run.checks.values_list("model_id", flat=True))) == (
        "admin",
        ["acme/many-03", "acme/many-07"],
    )


def member(group: str, username: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


def test_curators_may_run_checks_and_finance_may_not(client, many):
    client.force_login(member(CURATORS, "curator"))
    assert 'id="run-health-checks"' in client.get(reverse("admin:health_healthcheckrun_changelist")).content.decode()
    assert "run_checks" in client.get(reverse("admin:health_modelreliability_changelist")).content.decode()
    assert client.post(reverse("admin:health_run_now")).status_code == HTTPStatus.FOUND

    client.force_login(member(FINANCE, "finance"))
    assert client.post(reverse("admin:health_run_now")).status_code == HTTPStatus.FORBIDDEN
    assert len(queued_tasks()) == 1
