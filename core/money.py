"""Money: exact decimals in the database, exact decimal strings in the API.

Per-token prices have up to 14 decimals and request fees reach whole dollars, so a price is
`DecimalField(24, 14)`; sums of many costs get more whole digits and the same 14 decimals.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.html import format_html

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


# --- Display (the admin): what a person reads, the exact value a hover away ------------------------

EMPTY = "—"
MILLION = Decimal(1_000_000)
CENT_DIGITS = 2
CENT = Decimal("0.01")
SMALL_SIGNIFICANT = 3  # under a dollar, enough digits to tell one small cost from another


def usd_display(value: Decimal | None) -> str:
    """USD as people write it: '$400.00', '$1,234.50', '-$0.25'. A dollar or more shows cents; under
    a dollar an amount keeps three significant digits ('$0.0125', '$0.000021', never '$0.00' for
    a cost that is not zero). The stored value has 14 decimals ('400.00000000000000'): this is for
    reading, `decimal_str` (and `usd_html`'s title) is the exact one."""
    if value is None:
        return EMPTY
    sign = "-" if value < 0 else ""
    amount = abs(value)
    if amount == 0 or amount >= 1:
        return f"{sign}${amount.quantize(CENT):,.2f}"
    # adjusted() is the exponent of the first significant digit: 0.000021 -> -5
    places = max(-amount.adjusted() + SMALL_SIGNIFICANT - 1, CENT_DIGITS)
    text = format(amount.quantize(Decimal(1).scaleb(-places)), "f").rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{sign}${whole}.{decimals.ljust(CENT_DIGITS, '0')}"


def per_million_display(price_per_token: Decimal | None, *, unit: bool = True) -> str:
    """A per-token price per million tokens, as OpenRouter's pages show it: 0.000021 ->
    '$21.00 / M tokens' ('$21.00' with `unit=False`, for a column whose header says '/ M')."""
    if price_per_token is None:
        return EMPTY
    text = usd_display(price_per_token * MILLION)
    return f"{text} / M tokens" if unit else text


def usd_html(value: Decimal | None, *, per_million: bool = False, unit: bool = True) -> str:
    """`usd_display` (or `per_million_display`) in a span whose title is the exact stored value,
    so that rounding never hides a digit from whoever hovers."""
    if value is None:
        return EMPTY
    text = per_million_display(value, unit=unit) if per_million else usd_display(value)
    exact = f"{decimal_str(value)} USD per token" if per_million else f"{decimal_str(value)} USD"
    return format_html('<span class="money" title="{}">{}</span>', exact, text)
