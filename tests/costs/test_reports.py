"""Cost and telemetry reports over a small ledger whose figures are worked out by hand."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costs.ingest import ingest_events
from tests.conftest import ApiClient
from tests.factories import CatalogModelFactory

pytestmark = pytest.mark.django_db

UTC = UTC


def event(
    request_id: str,
    at: datetime,
    *,
    model="acme/a",
    cost=None,
    success=True,
    role="coder",
    strategy="single",
    latency=None,
    tools=(),
    prompt=100,
    completion=10,
) -> dict:
    return {
        "request_id": request_id,
        "occurred_at": at,
        "model": model,
        "role": role,
        "strategy": strategy,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": None if cost is None else Decimal(cost),
        "success": success,
        "latency_ms": latency,
        "tools": list(tools),
    }


@pytest.fixture
def ledger(db):
    # acme/a: 0.000001 per prompt token, 0.000002 per completion token -> 100/10 tokens = 0.00012
    CatalogModelFactory(id="acme/a", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
    CatalogModelFactory(id="acme/b", price_prompt=Decimal("0.00001"), price_completion=Decimal("0.00002"))
    ingest_events(
        [
            # The last microsecond of March 31 and the first of April 1, UTC: two days, two months.
            event(
                "e1", datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC), cost="0.5", latency=100, tools=["search"]
            ),
            event("e2", datetime(2026, 4, 1, 0, 0, tzinfo=UTC), cost="0.25", success=False, latency=300),
            event(
                "e3", datetime(2026, 4, 1, 12, 0, tzinfo=UTC), latency=200, tools=["search", "code"]
            ),  # computed: 0.00012
            event(
                "e4",
                datetime(2026, 4, 1, 13, 0, tzinfo=UTC),
                model="acme/b",
                strategy="ensemble",
                cost="0.003",
                latency=1000,
            ),
            # acme/b at our prices: 100 x 0.00001 + 10 x 0.00002 = 0.0012. Reported 0.003 and 0.0013:
            # 0.0018 + 0.0001 of drift.
            event(
                "e5",
                datetime(2026, 4, 1, 14, 0, tzinfo=UTC),
                model="acme/b",
                strategy="ensemble",
                cost="0.0013",
                latency=400,
            ),
        ]
    )


@pytest.fixture
def reader(make_api_key) -> ApiClient:
    return ApiClient(make_api_key("costs:read"))


def test_daily_costs_split_at_utc_midnight_with_cost_per_success(reader, ledger):
    rows = reader.get("/api/v1/costs/daily?start=2026-03-31&end=2026-04-01&group_by=model").json()

    by_key = {(r["day"], r["key"]): r for r in rows}
    march = by_key[("2026-03-31", "acme/a")]
    assert (march["requests"], march["successes"], march["cost_usd"], march["cost_per_success_usd"]) == (
        1,
        1,
        "0.5",
        "0.5",
    )
    april_a = by_key[("2026-04-01", "acme/a")]
    assert april_a["requests"] == 2 and april_a["successes"] == 1
    assert april_a["cost_usd"] == "0.25012"  # reported 0.25 + computed 0.00012
    assert april_a["tokens"] == 220
    april_b = by_key[("2026-04-01", "acme/b")]
    assert april_b["cost_usd"] == "0.0043" and april_b["cost_per_success_usd"] == "0.00215"
    assert april_b["reported_requests"] == 2 and april_b["drift_usd"] == "0.0019"
    assert len(rows) == 3


def test_daily_costs_without_grouping_and_with_a_filter(reader, ledger):
    rows = reader.get("/api/v1/costs/daily?start=2026-04-01&end=2026-04-01").json()
    assert [(r["day"], r["key"], r["requests"], r["cost_usd"]) for r in rows] == [("2026-04-01", None, 4, "0.25442")]

    only_b = reader.get("/api/v1/costs/daily?start=2026-03-01&end=2026-04-30&model=acme/b").json()
    assert [r["cost_usd"] for r in only_b] == ["0.0043"]


def test_summary_has_success_rate_and_cost_per_success_per_key_and_in_total(reader, ledger):
    body = reader.get("/api/v1/costs/summary?start=2026-03-31&end=2026-04-01&group_by=strategy").json()

    assert body["total"]["requests"] == 5 and body["total"]["successes"] == 4
    assert body["total"]["success_rate"] == 0.8
    assert body["total"]["cost_usd"] == "0.75442"
    assert body["total"]["cost_per_success_usd"] == "0.188605"
    rows = {r["key"]: r for r in body["rows"]}
    assert rows["single"]["success_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert rows["single"]["cost_per_success_usd"] == "0.37506"
    assert rows["ensemble"]["cost_usd"] == "0.0043"
    assert [r["key"] for r in body["rows"]] == ["single", "ensemble"]  # dearest first


def test_the_csv_export_streams_the_daily_rows_with_formulas_escaped(reader, db):
    CatalogModelFactory(id="acme/a", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
    day = datetime(2026, 4, 2, 8, 0, tzinfo=UTC)
    nasty = [
        '=HYPERLINK("http://x")',
        "+1",
        "-2",
        "@SUM(A1)",
        "\tcmd",
        "\rcmd",
        "\n=1+1",
        "\uff1dHYPERLINK(1)",
        "\uff0b1",
        "\uff0d2",
        "\uff20SUM(A1)",
    ]
    ingest_events([event(f"n{i}", day, role=value, cost="1") for i, value in enumerate(nasty)])

    response = reader.get("/api/v1/costs/export.csv?start=2026-04-02&end=2026-04-02")

    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="llmhive-daily-costs-2026-04-02-2026-04-02.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "day",
        "model",
        "strategy",
        "role",
        "requests",
        "successes",
        "tokens",
        "cost_usd",
        "cost_per_success_usd",
        "unpriced_requests",
        # Added after: failures per error class (the columns above keep their places).
        "rate_limited_errors",
        "provider_error_errors",
        "timeout_errors",
        "context_length_errors",
        "content_filter_errors",
        "invalid_request_errors",
        "quality_errors",
    ]
    roles = sorted(r[3] for r in rows[1:])
    assert roles == sorted("'" + value for value in nasty)
    assert all(r[7] == "1" and r[4] == "1" and r[9] == "0" for r in rows[1:])


def test_the_event_level_export_streams_the_ledger(reader, ledger):
    response = reader.get("/api/v1/costs/export.csv?start=2026-03-31&end=2026-04-01&level=events")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["request_id"] for r in rows] == ["e1", "e2", "e3", "e4", "e5"]
    assert rows[2]["cost_usd"] == "" and rows[2]["computed_cost_usd"] == "0.00012"
    assert rows[2]["tools"] == "search code" and rows[1]["success"] == "false"


def test_telemetry_has_latency_percentiles_per_strategy_model_and_tool(reader, ledger):
    by_strategy = reader.get("/api/v1/telemetry/summary?start=2026-03-31&end=2026-04-01&by=strategy").json()
    rows = {r["key"]: r for r in by_strategy["rows"]}
    # single: latencies 100, 200, 300 -> p50 200, p95 290 (linear between closest ranks)
    assert rows["single"]["latency_ms_p50"] == 200.0 and rows["single"]["latency_ms_p95"] == 290.0
    assert rows["single"]["requests"] == 3 and rows["single"]["success_rate"] == pytest.approx(2 / 3, abs=1e-6)
    # ensemble: 400, 1000 -> p50 700, p95 970
    assert rows["ensemble"]["latency_ms_p50"] == 700.0 and rows["ensemble"]["latency_ms_p95"] == 970.0
    assert rows["ensemble"]["cost_usd"] == "0.0043"

    by_tool = reader.get("/api/v1/telemetry/summary?start=2026-03-31&end=2026-04-01&by=tool").json()
    tools = {r["key"]: r for r in by_tool["rows"]}
    assert tools["search"]["requests"] == 2 and tools["code"]["requests"] == 1
    assert tools["search"]["latency_ms_p50"] == 150.0

    by_model = reader.get("/api/v1/telemetry/summary?start=2026-04-01&end=2026-04-01&by=model").json()
    assert {r["key"]: r["requests"] for r in by_model["rows"]} == {"acme/a": 2, "acme/b": 2}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=2026-13-01", "start"),
        ("end=yesterday", "end"),
        ("group_by=colour", "group_by"),
        ("start=2026-04-02&end=2026-04-01", "start"),
        ("start=2020-01-01&end=2026-01-01", "end"),
    ],
)
def test_bad_report_parameters_are_a_422_naming_the_parameter(reader, query, field):
    response = reader.get(f"/api/v1/costs/daily?{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid" and body["errors"][0]["field"] == field and body["errors"][0]["in"] == "query"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/costs/daily",
        "/api/v1/costs/summary",
        "/api/v1/costs/export.csv",
        "/api/v1/telemetry/summary",
        "/api/v1/budgets",
    ],
)
def test_reports_need_the_costs_read_scope(make_api_key, path):
    assert ApiClient().get(path).status_code == 401
    assert ApiClient(make_api_key("route", "usage:write")).get(path).status_code == 403
    assert ApiClient(make_api_key("costs:read")).get(path).status_code == 200


def test_a_default_window_is_the_last_thirty_days(reader, db):
    CatalogModelFactory(id="acme/a")
    now = datetime.now(UTC)
    ingest_events([event("old", now - timedelta(days=31), cost="5"), event("new", now - timedelta(days=1), cost="2")])
    body = reader.get("/api/v1/costs/summary").json()
    assert body["total"]["cost_usd"] == "2" and body["total"]["requests"] == 1


def test_grouping_by_day_gives_one_row_per_day(reader, ledger):
    daily = reader.get("/api/v1/costs/daily?start=2026-03-31&end=2026-04-01&group_by=day").json()
    assert [(r["day"], r["key"], r["requests"], r["cost_usd"]) for r in daily] == [
        ("2026-03-31", None, 1, "0.5"),
        ("2026-04-01", None, 4, "0.25442"),
    ]

    summary = reader.get("/api/v1/costs/summary?start=2026-03-31&end=2026-04-01&group_by=day").json()
    assert [(r["key"], r["requests"], r["successes"], r["cost_per_success_usd"]) for r in summary["rows"]] == [
        ("2026-03-31", 1, 1, "0.5"),
        ("2026-04-01", 4, 3, "0.08480666666667"),
    ]  # 0.25442 / 3, 14 decimals, half even


def test_a_month_is_its_utc_days_only(reader, ledger):
    april = reader.get("/api/v1/costs/summary?start=2026-04-01&end=2026-04-30").json()["total"]
    march = reader.get("/api/v1/costs/summary?start=2026-03-01&end=2026-03-31").json()["total"]
    assert (march["requests"], march["cost_usd"]) == (1, "0.5")  # 23:59:59.999999 on the 31st
    assert (april["requests"], april["cost_usd"]) == (4, "0.25442")  # 00:00 on the 1st


def test_the_summary_breaks_down_per_model_and_per_strategy_with_drift(reader, ledger):
    body = reader.get("/api/v1/costs/summary?start=2026-03-31&end=2026-04-01&group_by=role").json()

    assert [(r["key"], r["requests"]) for r in body["rows"]] == [("coder", 5)]
    models = {r["key"]: r for r in body["by_model"]}
    assert (models["acme/a"]["cost_usd"], models["acme/a"]["success_rate"]) == (
        "0.75012",
        pytest.approx(2 / 3, abs=1e-6),
    )
    assert (models["acme/b"]["drift_usd"], models["acme/b"]["reported_requests"]) == ("0.0019", 2)
    # acme/a: 0.5 and 0.25 reported; the computed cost of those two is 2 x 0.00012.
    assert models["acme/a"]["drift_usd"] == "0.74976"
    assert [r["key"] for r in body["by_strategy"]] == ["single", "ensemble"]
    assert body["total"]["drift_usd"] == "0.75166"
    assert body["total"]["reported_requests"] == 4


def test_telemetry_takes_the_report_filters(reader, ledger):
    body = reader.get("/api/v1/telemetry/summary?start=2026-03-31&end=2026-04-01&by=strategy&model=acme/b").json()
    assert [(r["key"], r["requests"], r["latency_ms_p50"]) for r in body["rows"]] == [("ensemble", 2, 700.0)]

    coders = reader.get(
        "/api/v1/telemetry/summary?start=2026-03-31&end=2026-04-01&by=tool&role=coder&strategy=single"
    ).json()
    assert {r["key"]: r["requests"] for r in coders["rows"]} == {"search": 2, "code": 1}
    nobody = reader.get("/api/v1/telemetry/summary?start=2026-03-31&end=2026-04-01&role=nobody").json()
    assert nobody["rows"] == []


def test_a_model_reported_by_its_canonical_slug_is_reported_under_its_catalog_id(reader, db):
    CatalogModelFactory(
        id="acme/c",
        canonical_slug="acme/c-20260301",
        price_prompt=Decimal("0.000001"),
        price_completion=Decimal("0.000002"),
    )
    at = datetime(2026, 4, 3, 9, 0, tzinfo=UTC)
    ingest_events([event("s1", at, model="acme/c-20260301", latency=10), event("s2", at, model="acme/c", latency=30)])

    daily = reader.get("/api/v1/costs/daily?start=2026-04-03&end=2026-04-03&group_by=model").json()
    assert [(r["key"], r["requests"]) for r in daily] == [("acme/c", 2)]
    telemetry = reader.get("/api/v1/telemetry/summary?start=2026-04-03&end=2026-04-03&by=model").json()
    assert [(r["key"], r["requests"], r["latency_ms_p50"]) for r in telemetry["rows"]] == [("acme/c", 2, 20.0)]
    filtered = reader.get("/api/v1/telemetry/summary?start=2026-04-03&end=2026-04-03&model=acme/c").json()
    assert sum(r["requests"] for r in filtered["rows"]) == 2
    response = reader.get("/api/v1/costs/export.csv?start=2026-04-03&end=2026-04-03&level=events&model=acme/c")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted((r["request_id"], r["model"]) for r in rows) == [("s1", "acme/c-20260301"), ("s2", "acme/c")]


def test_the_event_export_escapes_formulas_and_streams_every_row_in_chunks(reader, db):
    CatalogModelFactory(id="acme/a", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
    day = datetime(2026, 4, 2, 8, 0, tzinfo=UTC)
    nasty = [
        '=HYPERLINK("http://x")',
        "+1",
        "-2",
        "@SUM(A1)",
        "\tcmd",
        "\rcmd",
        "\n=1+1",
        "\uff1dHYPERLINK(1)",
        "\uff0b1",
        "\uff0d2",
        "\uff20SUM(A1)",
    ]
    ingest_events(
        [event(f"n{i}", day, model=value, role=value, strategy=value, cost="1") for i, value in enumerate(nasty)]
    )
    for batch in range(3):  # past one chunk of the stream
        ingest_events([event(f"b{batch}-{i}", day + timedelta(seconds=i), cost="0.001") for i in range(900)])

    response = reader.get("/api/v1/costs/export.csv?start=2026-04-02&end=2026-04-02&level=events")

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="llmhive-events-2026-04-02-2026-04-02.csv"'
    chunks = [chunk.decode() for chunk in response.streaming_content]
    assert len(chunks) > 2  # streamed, not one body
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == len(nasty) + 2700
    escaped = {r["request_id"]: r for r in rows if r["request_id"].startswith("n")}
    for i, value in enumerate(nasty):
        row = escaped[f"n{i}"]
        assert row["model"] == row["role"] == row["strategy"] == "'" + value


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/v1/costs/summary", "group_by=colour", "group_by"),
        ("/api/v1/costs/summary", "end=2026-02-30", "end"),
        ("/api/v1/costs/export.csv", "level=everything", "level"),
        ("/api/v1/costs/export.csv", "start=01/04/2026", "start"),
        ("/api/v1/telemetry/summary", "by=colour", "by"),
        ("/api/v1/telemetry/summary", "start=2026-04-02&end=2026-04-01", "start"),
    ],
)
def test_every_report_names_the_bad_parameter(reader, path, query, field):
    response = reader.get(f"{path}?{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == field and body["errors"][0]["in"] == "query"
    assert body["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("query", "filters", "start"), ("query", "start")),  # a field of a Query[...] schema
        (("query", "params", "group_by"), ("query", "group_by")),  # whatever the view calls the schema
        (("query", "filters", "capability", 0), ("query", "capability.0")),
        (("query", "start"), ("query", "start")),  # a plain query parameter
        (("query", "capability", 0), ("query", "capability.0")),  # an item of a plain list parameter
        (("body", "payload", "events", 3, "model"), ("body", "events.3.model")),
        (("path", "model_id"), ("path", "model_id")),
    ],
)
def test_a_validation_error_names_the_field_callers_sent(loc, expected):
    from core.errors import _field_path

    assert _field_path(loc) == expected


@pytest.fixture
def unpriced(db):
    """router/auto has no usable price: its events cost nothing known. acme/a is priced."""
    CatalogModelFactory(id="router/auto", variable_pricing=True, price_prompt=None, price_completion=None)
    CatalogModelFactory(id="acme/a", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
    day = datetime(2026, 4, 5, 9, 0, tzinfo=UTC)
    ingest_events(
        [
            event("u1", day, model="router/auto", latency=10),
            event("u2", day, model="router/auto", latency=20),
            event("p1", day, model="acme/a", strategy="ensemble"),  # computed: 0.00012
            event("p2", day, model="acme/a", strategy="ensemble", cost="0.5"),  # reported
            event("m1", day, model="router/auto", strategy="mixed"),
            event("m2", day, model="acme/a", strategy="mixed"),
        ]
    )


DAY5 = "start=2026-04-05&end=2026-04-05"


def test_cost_per_success_is_null_not_zero_when_nothing_was_priced(reader, unpriced):
    daily = reader.get(f"/api/v1/costs/daily?{DAY5}&group_by=model").json()
    by_model = {r["key"]: r for r in daily}
    assert by_model["router/auto"]["cost_usd"] == "0" and by_model["router/auto"]["cost_per_success_usd"] is None
    assert by_model["router/auto"]["unpriced_requests"] == 3
    assert by_model["acme/a"]["cost_per_success_usd"] == "0.16674666666667"  # (0.00012 x 2 + 0.5) / 3

    summary = reader.get(f"/api/v1/costs/summary?{DAY5}&group_by=strategy").json()
    strategies = {r["key"]: r for r in summary["rows"]}
    assert strategies["single"]["cost_per_success_usd"] is None and strategies["single"]["unpriced_requests"] == 2
    # Partly priced: the figure stands, and says how many events it leaves out.
    assert (strategies["mixed"]["cost_per_success_usd"], strategies["mixed"]["unpriced_requests"]) == ("0.00006", 1)
    assert summary["total"]["unpriced_requests"] == 3

    telemetry = reader.get(f"/api/v1/telemetry/summary?{DAY5}&by=model").json()
    rows = {r["key"]: r for r in telemetry["rows"]}
    assert rows["router/auto"]["cost_per_success_usd"] is None and rows["router/auto"]["unpriced_requests"] == 3
    assert rows["acme/a"]["cost_per_success_usd"] == "0.16674666666667"


def test_the_daily_csv_has_an_unpriced_column_and_no_pretend_cost_per_success(reader, unpriced):
    response = reader.get(f"/api/v1/costs/export.csv?{DAY5}")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    figures = {
        (r["model"], r["strategy"]): (r["cost_usd"], r["cost_per_success_usd"], r["unpriced_requests"]) for r in rows
    }
    assert figures == {
        ("acme/a", "ensemble"): ("0.50012", "0.25006", "0"),
        ("acme/a", "mixed"): ("0.00012", "0.00012", "0"),
        ("router/auto", "mixed"): ("0", "", "1"),
        ("router/auto", "single"): ("0", "", "2"),
    }


@pytest.mark.parametrize(
    "query, expected",
    [
        ("by=model&strategy=mixed", {"acme/a": 1, "router/auto": 1}),
        ("by=model&model=router/auto", {"router/auto": 3}),
        ("by=strategy&model=acme/a", {"ensemble": 2, "mixed": 1}),
        ("by=strategy&role=coder&strategy=single", {"single": 2}),
        ("by=model&role=writer", {}),
    ],
)
def test_telemetry_honours_each_filter(reader, unpriced, query, expected):
    body = reader.get(f"/api/v1/telemetry/summary?{DAY5}&{query}").json()
    assert {r["key"]: r["requests"] for r in body["rows"]} == expected
