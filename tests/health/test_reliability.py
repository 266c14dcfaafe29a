"""Reliability from the checks (recent ones weigh more), the model_unhealthy alert after
repeated failures and its recovery note, the selectors routing and the dashboard read, and the
HEALTH data version that makes routing rebuild."""

from __future__ import annotations

import pytest

from core.models import Alert, DataVersion
from health.checks import run_health_checks
from health.models import HEALTH_VERSION, ModelReliability
from health.models import AlertKind as HealthAlertKind
from health.selectors import reliability_by_model, unhealthy_models
from tests.fake_openrouter import status
from tests.health.conftest import DOWN, UP

pytestmark = pytest.mark.django_db


def weighted_mean(scores: list[float], half_life: float) -> float:
    """The definition: each check weighs 0.5 ** (its age in checks / half_life)."""
    weights = [0.5 ** ((len(scores) - 1 - i) / half_life) for i in range(len(scores))]
    return sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights)


def check(fake, model_id: str, endpoints: list[dict]) -> None:
    fake.set_endpoints(model_id, endpoints)
    run_health_checks(model_ids=[model_id])


def test_reliability_is_the_mean_of_the_checks_with_recent_ones_weighing_more(acme, fake_openrouter, no_key, settings):
    settings.LLMHIVE_HEALTH_RELIABILITY_HALF_LIFE = 12
    history = [[UP]] * 10 + [[DOWN]] * 3 + [[UP, DOWN]] * 2
    scores = [1.0] * 10 + [0.0] * 3 + [0.5] * 2

    for endpoints in history:
        check(fake_openrouter, "acme/m0", endpoints)

    row = ModelReliability.objects.get(model_id="acme/m0")
    assert row.reliability == pytest.approx(weighted_mean(scores, 12))
    assert row.checks_count == 15
    # The recent failures weigh more than the older successes: below the plain mean.
    assert row.reliability < sum(scores) / len(scores)


def test_a_failure_now_costs_more_than_the_same_failure_long_ago(acme, fake_openrouter, no_key):
    for endpoints in [[DOWN]] + [[UP]] * 6:
        check(fake_openrouter, "acme/m0", endpoints)
    for endpoints in [[UP]] * 6 + [[DOWN]]:
        check(fake_openrouter, "acme/m1", endpoints)

    reliability = reliability_by_model()
    assert reliability["acme/m0"] > reliability["acme/m1"]
    assert reliability["acme/m0"] == pytest.approx(weighted_mean([0] + [1] * 6, 12))
    assert reliability["acme/m1"] == pytest.approx(weighted_mean([1] * 6 + [0], 12))


def test_a_first_check_counts_fully(acme, fake_openrouter, no_key):
    check(fake_openrouter, "acme/m0", [UP])
    check(fake_openrouter, "acme/m1", [UP, DOWN, DOWN, DOWN])

    assert reliability_by_model() == {"acme/m0": 1.0, "acme/m1": 0.25}  # partly up counts partly


def test_endpoints_up_but_a_failing_ping_counts_as_a_failure(acme, fake_openrouter, keyed):
    fake_openrouter.set_endpoints("acme/m0", [UP])
    fake_openrouter.script("/chat/completions", status(502))

    run_health_checks(model_ids=["acme/m0"])

    row = ModelReliability.objects.get(model_id="acme/m0")
    assert (row.reliability, row.consecutive_failures) == (0.0, 1)
    assert row.last_error.startswith("servererror:502: OpenRouter answered POST /chat/completions with 502")


def test_reliability_by_model_is_one_query(acme, fake_openrouter, no_key, django_assert_num_queries):
    run_health_checks(model_ids=["acme/m0", "acme/m1"])
    with django_assert_num_queries(1):
        assert set(reliability_by_model()) == {"acme/m0", "acme/m1"}


def test_an_alert_after_n_failures_in_a_row_and_a_recovery_note(acme, fake_openrouter, no_key, settings):
    settings.LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT = 3
    check(fake_openrouter, "acme/m3", [UP])

    for _ in range(2):
        check(fake_openrouter, "acme/m3", [DOWN])
    assert not Alert.objects.filter(kind=HealthAlertKind.MODEL_UNHEALTHY).exists()

    check(fake_openrouter, "acme/m3", [DOWN])
    alert = Alert.objects.open().get(kind=HealthAlertKind.MODEL_UNHEALTHY)
    assert alert.model_id == "acme/m3" and "failed 3 health checks in a row" in alert.message
    assert "no_endpoint_up" in alert.message and alert.details["consecutive_failures"] == 3

    check(fake_openrouter, "acme/m3", [DOWN])  # still failing: the same alert, raised again
    alert.refresh_from_db()
    assert Alert.objects.filter(kind=HealthAlertKind.MODEL_UNHEALTHY).count() == 1 and alert.times == 2
    row = ModelReliability.objects.get(model_id="acme/m3")
    assert [(m.model_id, m.consecutive_failures) for m in unhealthy_models()] == [("acme/m3", 4)]
    assert unhealthy_models()[0].last_error.startswith("no_endpoint_up")

    check(fake_openrouter, "acme/m3", [UP])
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None
    assert "Recovered at" in alert.message and alert.details["note"].startswith("recovered at")
    row.refresh_from_db()
    assert (row.consecutive_failures, row.last_error, row.last_ok_at) == (0, "", row.last_checked_at)
    # Passing again ends the streak; the reliability of 1 good check in the last 6 stays low.
    assert row.reliability == pytest.approx(weighted_mean([1, 0, 0, 0, 0, 1], 12))
    assert row.reliability < settings.LLMHIVE_UNHEALTHY_RELIABILITY
    assert [(m.model_id, m.consecutive_failures) for m in unhealthy_models()] == [("acme/m3", 0)]

    check(fake_openrouter, "acme/m3", [DOWN])  # one failure after recovering: no new alert yet
    assert not Alert.objects.open().filter(kind=HealthAlertKind.MODEL_UNHEALTHY).exists()


def test_low_reliability_alone_lists_a_model_as_unhealthy(acme, fake_openrouter, no_key, settings):
    settings.LLMHIVE_UNHEALTHY_RELIABILITY = 0.5
    check(fake_openrouter, "acme/m0", [UP, DOWN, DOWN])  # one in three up: ok, but 0.33
    check(fake_openrouter, "acme/m1", [UP, DOWN])  # 0.5: not below

    assert [(m.model_id, m.consecutive_failures) for m in unhealthy_models()] == [("acme/m0", 0)]


def test_every_run_bumps_the_health_version(acme, fake_openrouter, no_key):
    versions = [DataVersion.current().get(HEALTH_VERSION)]
    for _ in range(2):  # the second run changes nothing, and still tells routing
        run_health_checks(model_ids=["acme/m0"])
        versions.append(DataVersion.current()[HEALTH_VERSION])

    assert len(set(versions)) == 3
