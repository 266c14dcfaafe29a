"""README's API table is the list a newcomer reads: it names every endpoint the OpenAPI schema
has, and none it does not."""

from __future__ import annotations

import re
from pathlib import Path

from llmhive_site.api import api

README = Path(__file__).resolve().parent.parent / "README.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
API_PREFIX = "/api/v1"


def readme_endpoints(text: str) -> set[tuple[str, str]]:
    """(method, path) of each row of the table under '## API'. A row's first cell is a method and
    one or more backquoted paths: `/api/v1/families`, `/categories` (the later ones relative to
    /api/v1)."""
    section = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    found = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or not cells or cells[0].split(" ", 1)[0] not in METHODS:
            continue
        method = cells[0].split(" ", 1)[0]
        for path in re.findall(r"`([^`]+)`", cells[0]):
            found.add((method, path if path.startswith("/api/") else API_PREFIX + path))
    return found


def schema_endpoints() -> set[tuple[str, str]]:
    """(method, path) of each operation of the OpenAPI document served at /api/openapi.json."""
    schema = api.get_openapi_schema()
    return {(method.upper(), path) for path, operations in schema["paths"].items() for method in operations}


def test_the_readme_api_table_lists_every_endpoint_of_the_schema():
    in_schema = schema_endpoints()
    in_readme = readme_endpoints(README.read_text(encoding="utf-8"))

    assert len(in_schema) > 10
    assert not in_schema - in_readme, f"endpoints missing from README's API table: {sorted(in_schema - in_readme)}"
    assert not in_readme - in_schema, (
        f"README's API table names endpoints that do not exist: {sorted(in_readme - in_schema)}"
    )


def test_the_table_parser_reads_rows_with_several_paths():
    text = (
        "intro\n## API\n\n| method and path | scope | what |\n|---|---|---|\n"
        "| GET `/api/v1/families`, `/categories/{slug}/rankings` | route | x |\n"
        "| POST `/api/v1/route` | route | a `/not/a/path` in the text |\n## Next\n| GET `/api/v1/other` | | |\n"
    )
    assert readme_endpoints(text) == {
        ("GET", "/api/v1/families"),
        ("GET", "/api/v1/categories/{slug}/rankings"),
        ("POST", "/api/v1/route"),
    }
