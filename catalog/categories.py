"""Categories discovered where they are used: OpenRouter's documented list (research), the
category a `/route` call asks for, and the one a usage report carries.

A slug no Category row knows is recorded as a *proposed* category (inactive, with when it was
first and last seen and how often) and announced once by a `new_category` alert; a curator
adopts it (it becomes active) or retires it (it stays known, inactive, and is never proposed
again) in the admin.

Recording must cost the callers nothing in the common case. Each process remembers the slugs
that turned out to be adopted or retired (no query for them ever again) and when it last
recorded each proposed one: a slug is written at most once a minute per process, in one
statement for the whole set, and never when every slug is already known. The number of proposed
rows is capped, so a client sending random categories cannot fill the table.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable

from django.db import connection
from django.utils import timezone

from catalog.models import AlertKind, Category, CategorySource
from core.alerts import NewAlert, raise_alerts

# A slug is recorded again (last seen, count) at most this often per process.
RECORD_INTERVAL_SECONDS = 60.0
# No new proposed category while this many wait for a curator.
MAX_PROPOSED = 100
# The per-process memory of recent sightings is pruned past this many slugs.
MAX_REMEMBERED = 1000

_SLUG = re.compile(r"^[a-z0-9][a-z0-9\-]*(/[a-z0-9\-]+)*$")  # catalog.models.category_slug_validator's rule


def is_category_slug(value: str) -> bool:
    max_length = Category._meta.get_field("slug").max_length
    return bool(value) and len(value) <= max_length and bool(_SLUG.match(value))


def category_name(slug: str) -> str:
    """`marketing/seo` -> `Marketing: Seo`, the way the seeded categories are named."""
    return ": ".join(part.replace("-", " ").capitalize() for part in slug.split("/"))[:100]


class CategorySightings:
    """The per-process memory that keeps recording cheap (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._recorded_at: dict[str, float] = {}

    def due(self, slugs: Iterable[str]) -> list[str]:
        """The slugs worth a write now: well-formed, not known to be adopted or retired, and not
        recorded by this process in the last minute. Marks them as recorded."""
        now = time.monotonic()
        with self._lock:
            if len(self._recorded_at) > MAX_REMEMBERED:
                self._recorded_at = {
                    slug: at for slug, at in self._recorded_at.items() if now - at < RECORD_INTERVAL_SECONDS
                }
            due = sorted(
                {
                    slug
                    for slug in slugs
                    if slug
                    and slug not in self._known
                    and now - self._recorded_at.get(slug, -RECORD_INTERVAL_SECONDS) >= RECORD_INTERVAL_SECONDS
                    and is_category_slug(slug)
                }
            )
            for slug in due:
                self._recorded_at[slug] = now
            return due

    def learn_known(self, slugs: Iterable[str]) -> None:
        with self._lock:
            self._known.update(slugs)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()
            self._recorded_at.clear()


sightings = CategorySightings()


def record_categories(slugs: Iterable[str], source: str) -> list[str]:
    """Record the slugs that no active or retired category knows; returns the ones new to the
    catalog (each raised as a `new_category` alert). No query when nothing is due."""
    due = sightings.due(slugs)
    if not due:
        return []
    written = _upsert_proposed(due, source)
    # Adopted and retired categories: never asked about again by this process.
    sightings.learn_known(slug for slug, (proposed, _count) in written.items() if not proposed)
    new = sorted(slug for slug, (proposed, count) in written.items() if proposed and count == 1)
    if new:
        raise_alerts(new_category_alert(slug, source) for slug in new)
    return new


def _upsert_proposed(slugs: list[str], source: str) -> dict[str, tuple[bool, int]]:
    """One statement: insert the slugs as proposed categories (while fewer than MAX_PROPOSED
    wait), or count one more sighting of those already proposed; adopted and retired categories
    keep their counts. Returns {slug: (proposed, seen_count)} of the slugs in the table: a count
    of 1 on a proposed row is a row this statement created. A new slug refused by the cap is
    not returned (and is tried again a minute later)."""
    ops = connection.ops
    table = ops.quote_name(Category._meta.db_table)
    q = ops.quote_name
    now = timezone.now()
    proposed_count = f"(SELECT COUNT(*) FROM {table} WHERE {q('proposed')})"
    # A slug already in the table always passes the cap, to reach the ON CONFLICT branch.
    exists = f"EXISTS (SELECT 1 FROM {table} WHERE {q('slug')} = %s)"
    # One SELECT per slug, so that the statement is the same on PostgreSQL and SQLite (SQLite
    # has no column aliases on VALUES); the WHERE also lets SQLite parse the ON CONFLICT.
    row = f"SELECT %s, %s, FALSE, TRUE, %s, %s, %s, 1 WHERE {proposed_count} < %s OR {exists}"
    params: list = []
    for slug in slugs:
        params += [slug, category_name(slug), source, now, now, MAX_PROPOSED, slug]
    columns = ", ".join(
        q(c) for c in ("slug", "name", "active", "proposed", "source", "first_seen_at", "last_seen_at", "seen_count")
    )
    proposed = f"{table}.{q('proposed')}"
    sql = (
        f"INSERT INTO {table} ({columns}) {' UNION ALL '.join([row] * len(slugs))} "
        f"ON CONFLICT ({q('slug')}) DO UPDATE SET "
        f"{q('last_seen_at')} = CASE WHEN {proposed} THEN EXCLUDED.{q('last_seen_at')} "
        f"ELSE {table}.{q('last_seen_at')} END, "
        f"{q('seen_count')} = {table}.{q('seen_count')} + CASE WHEN {proposed} THEN 1 ELSE 0 END "
        f"RETURNING {q('slug')}, {q('proposed')}, {q('seen_count')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {slug: (bool(is_proposed), count) for slug, is_proposed, count in cursor.fetchall()}


def new_category_alert(slug: str, source: str) -> NewAlert:
    label = CategorySource(source).label if source in CategorySource.values else source
    return NewAlert(
        AlertKind.NEW_CATEGORY,
        f"New category '{slug}' (first seen from: {label}). Adopt it or retire it in the admin's categories.",
        subject=slug,
        once=True,
        details={"slug": slug, "source": source},
    )
