"""The usage ledger's date hierarchy, drawn from the daily rollup.

Django's own tag asks the ledger for its distinct months or days: a scan of every event (a third
of a second at a million). The rollup has a row per day and model, so the same choices come from
a few thousand rows. Links and filtering are Django's: only where the dates come from changes.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from django import template
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.db.models import Max, Min

from costs.models import DailyCost

register = template.Library()


class RollupDates:
    """Stands in for the changelist's queryset where the date hierarchy reads it."""

    def __init__(self, cl) -> None:
        days = DailyCost.objects.all()
        for key in ("strategy", "role"):
            if cl.params.get(key) is not None:
                days = days.filter(**{key: cl.params[key]})
        field = cl.date_hierarchy
        for part in ("year", "month", "day"):
            value = cl.params.get(f"{field}__{part}")
            if value:
                days = days.filter(**{f"day__{part}": value})
        self.days = days

    @staticmethod
    def _midnight(day):
        return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)

    def aggregate(self, **kwargs):
        bounds = self.days.aggregate(first=Min("day"), last=Max("day"))
        return {key: self._midnight(value) for key, value in bounds.items()}

    def datetimes(self, field_name, kind):
        return [self._midnight(day) for day in self.days.dates("day", kind)]

    dates = datetimes


@register.inclusion_tag("admin/date_hierarchy.html")
def rollup_date_hierarchy(cl):
    shim = copy.copy(cl)
    shim.queryset = RollupDates(cl)
    return date_hierarchy(shim) or {"show": False}
