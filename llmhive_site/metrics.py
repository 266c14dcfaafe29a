"""GET /api/v1/metrics: Prometheus' text format, for keys with the `metrics:read` scope.

The web process's own figures (route decisions, POST /usage) come from `core.metrics`, summed
over every gunicorn worker. Work done in other processes is read from the database at scrape
time instead: syncs run in the django-q2 worker (scheduled) or in `manage.py sync_catalog`, and
usage events are stored by POST /usage and by the worker's health-check pings. A counter kept in
those processes would need them to share the web server's multiprocess directory, which the
server empties when it starts; the database has every run and every event wherever it was done,
and the figures survive restarts. The queries are small: runs grouped by kind and status, a sum
over the daily rollup (moved in the same transaction as the events it counts), the oldest queued
task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db.models import Count, Sum
from django.db.utils import DatabaseError
from django.http import HttpResponse
from django.utils import timezone
from ninja import Router
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from catalog.models import SyncRun, SyncStatus
from core import metrics
from core.auth import require
from core.errors import errors
from costs.models import DailyCost
from health.selectors import oldest_queued_task_age
from routing.models import CooldownState, ModelCooldown
from routing.snapshot import held_snapshot

logger = logging.getLogger(__name__)

router = Router(tags=["metrics"])


class DatabaseCollector(Collector):
    """Figures read from the database at scrape time. With the database out of reach they are
    left out of the scrape (Prometheus shows the gap) rather than failing it."""

    def collect(self) -> Iterator[Metric]:
        for part in (self._sync_runs, self._usage_events, self._cooldowns, self._task_queue):
            try:
                yield from part()
            except DatabaseError as exc:
                logger.warning("metrics: %s left out: %s", part.__name__.strip("_"), str(exc).splitlines()[0])

    def _sync_runs(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "llmhive_sync_runs",
            "Catalog runs finished, by kind (sync, research) and result.",
            labels=["kind", "result"],
        )
        rows = (
            SyncRun.objects.exclude(status=SyncStatus.RUNNING)
            .values_list("kind", "status")
            .annotate(n=Count("id"))
            .order_by("kind", "status")
        )
        for kind, status, n in rows:
            family.add_metric([kind, status], n)
        yield family

    def _usage_events(self) -> Iterator[Metric]:
        stored = DailyCost.objects.aggregate(n=Sum("requests"))["n"] or 0
        yield CounterMetricFamily(
            "llmhive_usage_events", "Usage events stored in the ledger, by any process.", value=stored
        )

    def _cooldowns(self) -> Iterator[Metric]:
        """Trips are counted on the cooldown rows (`trips` only grows), so the figure is the same
        whichever worker stored the batch that tripped one."""
        trips = CounterMetricFamily(
            "llmhive_cooldown_trips",
            "Times a model was taken out by a cooldown (retryable failures past the threshold, or a failure while half-open).",
            value=ModelCooldown.objects.aggregate(n=Sum("trips"))["n"] or 0,
        )
        out = GaugeMetricFamily(
            "llmhive_cooldowns_open",
            "Models out now: cooldowns open and not yet past their time, per policy (role; '' is the default policy).",
            labels=["role"],
        )
        rows = (
            ModelCooldown.objects.filter(state=CooldownState.OPEN, until__gt=timezone.now())
            .values_list("role")
            .annotate(n=Count("id"))
            .order_by("role")
        )
        for role, n in rows:
            out.add_metric([role], n)
        yield trips
        yield out

    def _task_queue(self) -> Iterator[Metric]:
        from django_q.conf import Conf

        if not Conf.ORM:  # Redis keeps no enqueue time
            return
        age = oldest_queued_task_age()
        yield GaugeMetricFamily(
            "llmhive_task_queue_oldest_seconds",
            "How long the oldest task waiting for a django-q2 worker has waited (0 when none waits).",
            value=age or 0.0,
        )


@router.get(
    "/metrics",
    response=errors(401, 403),
    auth=require("metrics:read"),
    summary="Prometheus metrics (text format, or OpenMetrics when asked)",
    openapi_extra={
        "responses": {200: {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    },
)
def prometheus_metrics(request):
    """Route decisions by result and their latency, the routing snapshot's age, sync runs,
    usage events, cooldown trips and models out, the oldest queued task. Summed over every web worker under gunicorn."""
    try:
        held_snapshot()  # re-checked now if due: this worker's age is as fresh as can be (none built)
    except DatabaseError:
        pass  # the age grows: that is what it is for
    body, content_type = metrics.render(request.headers.get("Accept", ""), DatabaseCollector())
    return HttpResponse(body, content_type=content_type)
