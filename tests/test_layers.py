"""One way down: import-linter holds the layers, and an import against them fails it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("core", "openrouter", "catalog", "costs", "health", "routing", "llmhive_site")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (bin/setup installs it)"
)


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the project's packages and pyproject.toml, to break on purpose."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        if (ROOT / package).exists():
            shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_project_keeps_its_layers(tree):
    result = lint(tree)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_an_upward_import_inside_a_function_fails_the_contract(tree):
    sync = tree / "catalog" / "sync.py"
    sync.write_text(sync.read_text() + "\n\ndef _upward():\n    from routing.models import Role\n\n    return Role\n")

    result = lint(tree)

    assert result.returncode != 0
    assert "catalog is not allowed to import routing" in result.stdout
    assert "catalog.sync -> routing.models" in result.stdout
