"""gunicorn's settings for LLMHive, read by gunicorn from the directory it starts in (or give
`-c path/to/gunicorn.conf.py`). Command-line options still win.

Prometheus' multiprocess mode (GET /api/v1/metrics): each worker writes its figures to files in
one directory and a scrape sums them, whichever worker answers it. The directory must be known
before prometheus_client is imported (here, before the app is loaded, also with --preload), and
hold no files of an earlier server: stale counters would be added to the new ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# LLMHIVE_METRICS_DIR, or a directory of this server's own under the var directory (two servers
# started from one checkout must not share one: each empties it when it starts).
_configured = os.environ.get("LLMHIVE_METRICS_DIR", "")
_parent = Path(os.environ.get("LLMHIVE_VAR_DIR") or Path(__file__).resolve().parent / "var").resolve() / "metrics"
metrics_dir = Path(_configured).resolve() if _configured else _parent / f"gunicorn-{os.getpid()}"
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_starting(server) -> None:
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # prometheus_client's files only
        stale.unlink()
    if not _configured:  # directories left by servers that were killed
        for old in _parent.glob("gunicorn-*"):
            pid = old.name.removeprefix("gunicorn-")
            if old != metrics_dir and pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)


def child_exit(server, worker) -> None:
    # A dead worker's counters stay (they are part of the totals); its live gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(metrics_dir))


def on_exit(server) -> None:
    if not _configured:
        shutil.rmtree(metrics_dir, ignore_errors=True)


# The longest request line gunicorn takes (its maximum; the default is 4094). A longer one is
# answered by gunicorn itself with a 400/414 page before Django sees it, so it cannot be JSON:
# query filters are short (the API bounds them far below this), so only a malformed client hits it.
limit_request_line = 8190

# gunicorn's sync worker, which tells the background refresh when a request is in flight
# (llmhive_site/workers.py): the refresh steps aside until it is answered. The project's gthread
# class does the same for each of its threads; choosing between them: docs/ops/deploying.md,
# "Serving /route" (measured with tests/benchmarks/bench_workers.py). For gthread, set:
#   worker_class = "llmhive_site.workers.ThreadWorker"
#   threads = 4
worker_class = "llmhive_site.workers.SyncWorker"


def post_worker_init(worker) -> None:
    from llmhive_site.workers import ready

    ready()


def pre_request(worker, req) -> None:
    from llmhive_site.workers import started

    started()


def post_request(worker, req, environ, resp) -> None:
    from llmhive_site.workers import answered

    answered()
