"""The admin's money: no padding, cents for amounts, per-million prices, the exact value on hover."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.money import per_million_display, usd_display, usd_html


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("400.00000000000000", "$400.00"),
        ("0", "$0.00"),
        ("1234.5", "$1,234.50"),
        ("-0.25000000000000", "-$0.25"),
        ("12.34567800000000", "$12.35"),
        ("0.00002100000000", "$0.000021"),  # under a cent: never '$0.00' for a non-zero amount
        ("0.00001234567", "$0.0000123"),
        ("0.01250000000000", "$0.0125"),
        ("0.5", "$0.50"),
        ("0.38", "$0.38"),
        ("0.999999", "$1.00"),
    ],
)
def test_usd_display(stored, shown):
    assert usd_display(Decimal(stored)) == shown


def test_per_million_display():
    assert per_million_display(Decimal("0.00002100000000")) == "$21.00 / M tokens"
    assert per_million_display(Decimal("0.00000125"), unit=False) == "$1.25"
    assert per_million_display(None) == usd_display(None) == "—"


def test_usd_html_keeps_the_exact_value_in_the_title():
    assert usd_html(Decimal("12.34567800000000")) == '<span class="money" title="12.345678 USD">$12.35</span>'
    assert usd_html(Decimal("0.000021"), per_million=True) == (
        '<span class="money" title="0.000021 USD per token">$21.00 / M tokens</span>'
    )
