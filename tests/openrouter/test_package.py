"""`openrouter` is a plain package: importing it, and every module in it, pulls in nothing from
Django or from the project's apps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "catalog", "costs", "health", "routing", "llmhive_site", "core")

# Run in a fresh interpreter: this one has Django and every app loaded already.
PROBE = """
import importlib, json, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import openrouter
names = sorted(m.name for m in pkgutil.iter_modules(openrouter.__path__, "openrouter."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"file": openrouter.__file__, "submodules": names, "modules": sorted(sys.modules)}))
"""


def test_openrouter_and_every_submodule_import_nothing_from_django_or_the_project():
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["file"]).resolve() == ROOT / "openrouter" / "__init__.py"
    assert {
        "openrouter.client",
        "openrouter.errors",
        "openrouter.parsing",
        "openrouter.transport",
        "openrouter.types",
    } <= set(found["submodules"])
    leaked = [name for name in found["modules"] if name.split(".")[0] in FORBIDDEN]
    assert leaked == []


def test_every_public_name_is_exported():
    import openrouter

    assert sorted(openrouter.__all__) == sorted(set(openrouter.__all__))
    assert [name for name in openrouter.__all__ if not hasattr(openrouter, name)] == []
