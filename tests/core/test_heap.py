"""core.heap: a serving process keeps what lives as long as it does out of the cyclic garbage
collector's scans, and times every pause of the collector."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.servers import ROOT, project_env

# A process as gunicorn makes one: the WSGI module loaded, then a first routing snapshot.
SERVE = """
import gc, json
import llmhive_site.wsgi
from core import metrics
from routing.snapshot import current_snapshot
loaded = gc.get_freeze_count()
current_snapshot()
warm = gc.get_freeze_count()
current_snapshot()
gc.collect()
text, _ = metrics.render("text/plain")
counts = {
    line.split('"')[1]: float(line.rsplit(" ", 1)[1])
    for line in text.decode().splitlines()
    if line.startswith("llmhive_gc_pause_seconds_count")
}
print(json.dumps({"loaded": loaded, "warm": warm, "after": gc.get_freeze_count(), "pauses": counts}))
"""


def serve(**env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SERVE], cwd=ROOT, env=project_env(**env), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_a_serving_process_freezes_its_application_then_its_first_snapshot_once():
    found = serve()
    # Django, the URLconf's views and every module they import: tens of thousands of objects.
    assert found["loaded"] > 20_000
    assert found["warm"] > found["loaded"]  # the first snapshot joins them
    assert found["after"] == found["warm"]  # and only the first
    # Every pause was timed, full collections (generation 2) included.
    assert found["pauses"]["2"] >= 3 and set(found["pauses"]) == {"0", "1", "2"}


@pytest.mark.django_db(transaction=True)
def test_with_freezing_off_the_collector_scans_everything_and_pauses_are_still_timed():
    found = serve(LLMHIVE_GC_FREEZE="false")
    assert found["loaded"] == found["warm"] == found["after"] == 0
    assert found["pauses"]["2"] >= 1
