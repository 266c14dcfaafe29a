"""CSV cells that a spreadsheet will not run as formulas.

A cell that starts with '=', '+', '-', '@', a tab, a carriage return or a line feed is prefixed
with a single quote (OWASP's advice for CSV injection), and so is one that starts with the
full-width forms '＝', '＋', '－', '＠', which spreadsheets in East Asian locales read as the same
formula starters. django-import-export's own setting escapes only '=';
the admin export and the API's CSV both go through `escape_cell`. Numbers are written by us as
numbers, not as text, so a negative amount stays a number: only strings are escaped.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def escape_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def escape_row(values) -> list:
    return [escape_cell(v) for v in values]
