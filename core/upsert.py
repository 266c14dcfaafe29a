"""Counters that many writers add to at once, without lost updates or deadlocks.

`add_to_rows` inserts a row per key or adds to the existing one in a single statement:
`INSERT … ON CONFLICT (key) DO UPDATE SET n = table.n + EXCLUDED.n`. Both PostgreSQL and
SQLite (3.24+) speak it. Rows are written in sorted key order, so two transactions that touch
the same rows take their locks in the same order and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, models
from django.utils import timezone

PG_TYPES = {
    "DateField": "date",
    "DateTimeField": "timestamptz",
    "CharField": "text",
    "DecimalField": "numeric",
    "FloatField": "double precision",
    "IntegerField": "integer",
    "PositiveIntegerField": "integer",
    "BigIntegerField": "bigint",
    "PositiveBigIntegerField": "bigint",
    "SmallIntegerField": "smallint",
    "PositiveSmallIntegerField": "smallint",
}


def chunks(rows: list, columns: int) -> Iterable[list]:
    """Slices small enough for the database's cap on parameters per statement."""
    limit = connection.features.max_query_params or 65_535
    size = max(1, min(len(rows), (limit // columns) - 1, 2_000))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def values_clause(columns: int, rows: int) -> str:
    one = "(" + ", ".join(["%s"] * columns) + ")"
    return ", ".join([one] * rows)


def add_to_rows(
    model: type[models.Model],
    key_fields: tuple[str, ...],
    sum_fields: tuple[str, ...],
    deltas: dict[tuple, dict],
    *,
    touch_field: str | None = "updated_at",
) -> None:
    """Add each delta to its row (keyed by the values of `key_fields`), creating missing rows."""
    if not deltas:
        return
    ops = connection.ops
    meta = model._meta
    table = ops.quote_name(meta.db_table)
    names = (*key_fields, *sum_fields) + ((touch_field,) if touch_field else ())
    fields = [meta.get_field(name) for name in names]
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    updates = [
        f"{ops.quote_name(f.column)} = {table}.{ops.quote_name(f.column)} + EXCLUDED.{ops.quote_name(f.column)}"
        for f in fields[len(key_fields) : len(key_fields) + len(sum_fields)]
    ]
    if touch_field:
        column = ops.quote_name(meta.get_field(touch_field).column)
        updates.append(f"{column} = EXCLUDED.{column}")
    upsert = f"ON CONFLICT ({', '.join(ops.quote_name(meta.get_field(k).column) for k in key_fields)}) DO UPDATE SET {', '.join(updates)}"
    now = timezone.now()
    ordered = sorted(deltas.items(), key=lambda item: tuple(str(part) for part in item[0]))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array per column: a handful of parameters however many rows there are.
            arrays = [[key[i] for key, _ in ordered] for i in range(len(key_fields))]
            arrays += [[sums[name] for _, sums in ordered] for name in sum_fields]
            if touch_field:
                arrays.append([now] * len(ordered))
            casts = ", ".join(f"%s::{PG_TYPES[f.get_internal_type()]}[]" for f in fields)
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({casts}) {upsert}", arrays)
            return
        for chunk in chunks(ordered, len(fields)):
            params: list = []
            for key, sums in chunk:
                row = [*key, *(sums[name] for name in sum_fields)] + ([now] if touch_field else [])
                params += [field.get_db_prep_save(value, connection) for field, value in zip(fields, row, strict=True)]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values_clause(len(fields), len(chunk))} {upsert}", params
            )
