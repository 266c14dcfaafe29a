"""The API's JSON body reader reads every body as json.loads does (orjson only makes it sooner)."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from core.parser import JsonParser

BODIES = [
    b'{"role": "coder", "max_cost_usd": "0.05", "fallback_count": 3}',
    b'{"estimated_input_tokens": 18446744073709551616}',  # past 64 bits: exact, not a float
    b'{"max_cost_usd": 0.1234567890123456789}',
    b'{"x": 9223372036854775807, "y": -9223372036854775808}',
    b'{"x": NaN, "y": Infinity}',
    b'{"x": 1e400}',
    b'{"role": "\\ud800"}',  # an escaped lone surrogate
    b'{"role": "cod\\u0000er"}',
    '{"role": "coder"}'.encode("utf-16"),
    '{"role": "coder"}'.encode("utf-32"),
    '\ufeff{"role": "coder"}'.encode(),  # with a byte order mark
    '{"role": "caf\u00e9 \U0001f600"}'.encode(),
    b'[1, 2, {"a": [true, false, null]}]',
]
BROKEN = [b"{", b'{"role": "coder",}', b"\xff\xfe\x00", b'{"a": 1} trailing', b"   "]


def parse(body: bytes):
    return JsonParser().parse_body(RequestFactory().post("/api/v1/route", body, content_type="application/json"))


@pytest.mark.parametrize("body", BODIES)
def test_a_body_is_read_as_json_loads_reads_it(body):
    assert repr(parse(body)) == repr(json.loads(body))


@pytest.mark.parametrize("body", BROKEN)
def test_a_broken_body_fails_as_json_loads_fails(body):
    with pytest.raises(ValueError) as ours:
        parse(body)
    with pytest.raises(ValueError) as theirs:
        json.loads(body)
    assert type(ours.value) is type(theirs.value)
