"""Money: exact decimals in the database, exact decimal strings in the API.

Per-token prices have up to 14 decimals and request fees reach whole dollars, so a price is
`DecimalField(24, 14)`; sums of many costs get more whole digits and the same 14 decimals.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

PRICE_DIGITS = 24
TOTAL_DIGITS = 30
DECIMAL_PLACES = 14


def money_field(*, total: bool = False, **kwargs) -> models.DecimalField:
    """A price (or, with `total=True`, a sum of many costs) in USD."""
    return models.DecimalField(
        max_digits=TOTAL_DIGITS if total else PRICE_DIGITS, decimal_places=DECIMAL_PLACES, **kwargs
    )


def decimal_str(value: Decimal | None) -> str | None:
    """The API's money: an exact decimal string, no exponent and no trailing zeros ('0.00000125',
    '0', '1.5', '400'); None stays None."""
    if value is None:
        return None
    text = format(value, "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def money_per(total: Decimal, count: int) -> Decimal | None:
    """An average cost (per request, per success) to the 14 decimals money is stored with; None
    when there is nothing to divide by."""
    if not count:
        return None
    return (total / count).quantize(Decimal(1).scaleb(-DECIMAL_PLACES))
