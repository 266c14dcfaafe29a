"""Text a database column cannot hold: a NUL character (PostgreSQL's text and jsonb refuse it) and
a UTF-16 surrogate not part of a pair (UTF-8 cannot encode it; json.loads makes one from
"\\ud800"; a pair arrives decoded as one character, so any surrogate left in a str stands alone).

API input (`core.middleware`) and catalog entries (`catalog.apply`) are both checked with these
before anything is written, so one such character is a clear refusal, never an aborted transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` with what the database cannot store written as escapes (for messages and details)."""
    return UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def problem(value: str) -> str:
    """What is wrong with a string UNSTORABLE matches, as a message."""
    char = UNSTORABLE.search(value).group()
    return "must not contain a NUL character" if char == "\x00" else "must not contain a lone UTF-16 surrogate"


def unstorable_in(value: Any) -> Iterator[tuple[tuple, str]]:
    """(path, message) for each string in a parsed JSON value that holds an unstorable character,
    in document order; an object's key is checked as well as its value (the key is then the last
    part of the path, escaped). Iterative: however deep the nesting json.loads accepted, no
    recursion limit is reached here."""
    pending: list[tuple[tuple, Any]] = [((), value)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if UNSTORABLE.search(value):
                yield path, problem(value)
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if UNSTORABLE.search(key):
                    yield (*path, printable(key)), f"a name {problem(key)}"
                else:
                    pending.append(((*path, key), item))
        elif isinstance(value, list):
            pending.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))
