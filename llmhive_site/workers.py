"""gunicorn's worker classes for LLMHive (gunicorn.conf.py: `worker_class`).

gunicorn's workers, telling this process's background refresh (core.versions' refresher) when a
request is in flight, so that the refresh steps aside meanwhile and a request does not wait for
the interpreter lock behind a rebuild of the routing snapshot (tests/benchmarks/bench_refresh.py):

- SyncWorker (gunicorn.conf.py's): gunicorn's sync worker, one request at a time, from accepting
  its connection to the end of writing the answer (`post_request`, before the worker lingers for
  the client to close).
- ThreadWorker: gunicorn's gthread worker, a thread per request in flight and connections kept
  open between requests. A request is in flight from gunicorn's `pre_request` (its head read) to
  `post_request` (its answer written), in the thread answering it.

gunicorn's master imports this module to read the class, before any worker loads Django: it
imports nothing that needs the settings.
"""

from __future__ import annotations

import socket

from gunicorn.http.body import LengthReader
from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

from core.versions import refresher


class ThreadWorker(GunicornThreadWorker):
    def handle(self, conn):
        try:
            return super().handle(conn)
        finally:
            refresher.request_finished()  # (also when no request came, or it failed)


class SyncWorker(GunicornSyncWorker):
    def accept(self, listener) -> None:
        with refresher.serving():  # (ended also when no connection was there, or it failed)
            super().accept(listener)

    def handle_request(self, listener, req, client, addr) -> None:
        super().handle_request(listener, req, client, addr)
        close_if_read(req, client)


def close_if_read(req, client) -> None:
    """Close the connection of an answered request at once when the client sent nothing the
    worker has not read (its body read to the end, nothing more waiting on the socket): closing
    then sends no reset that could cut the answer short, so there is nothing to linger for.

    gunicorn's sync worker otherwise lingers after every answer until the client closes its end
    (`util.close_graceful`, up to 2 s), so that a reset cannot cut off an answer given before
    the body was read (a 413, say): a round trip to the client for every request, during which
    the worker takes no other (a tenth of its time under bench_route's usage flow, py-spy; the
    client's own turn for a core on a busy machine). That case still lingers: a body left
    unread, chunked, or more bytes waiting (gunicorn's own close then runs on the socket)."""
    body = getattr(req, "body", None)
    reader = getattr(body, "reader", None)
    if not isinstance(reader, LengthReader) or reader.length or body.failed:
        return
    try:
        if client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
            return  # more bytes sent: let gunicorn drain them
    except BlockingIOError:
        pass  # nothing waiting
    except OSError:
        return
    try:
        client.close()  # (gunicorn's close that follows finds it closed and does nothing)
    except OSError:
        pass


def ready() -> None:
    """gunicorn's `post_worker_init` hook: the application is loaded; the worker builds its routing
    snapshot before it takes its first request (routing.snapshot.prewarm), and reads the data
    versions on its refresh thread from then on (core.versions.VersionWatch.poll_in_background)."""
    from core.models import version_watch  # (needs the settings: the worker has loaded them by now)
    from routing.snapshot import prewarm

    prewarm()
    version_watch.poll_in_background()


def started() -> None:
    """gunicorn's `pre_request` hook: a request's head is read, its answer is being made."""
    refresher.request_started()


def answered() -> None:
    """gunicorn's `post_request` hook: the answer is written."""
    refresher.request_finished()
