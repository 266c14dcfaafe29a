"""Bearer API keys with scopes, for every app's router.

Keys are looked up in a per-process cache of the live keys, rebuilt when the `api_keys` data
version moves (a key made, changed or revoked anywhere): a request costs no query to
authenticate, and a revoked key stops working everywhere within the version check interval.

With the database unreachable the cache keeps the keys it holds (a process that has none yet
cannot authenticate and answers 503), and `last_used_at` is not recorded. A gunicorn worker
records it on its refresh thread (ApiKey.touch(later=True)), so authenticating makes no query.
"""

from __future__ import annotations

import threading

from django.db import DatabaseError
from django.http import HttpRequest
from ninja.security import HttpBearer

from core.errors import ApiError
from core.models import API_KEYS_VERSION, KEY_PREFIX, ApiKey, DataVersion, hash_secret, version_watch


class KeyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._by_hash: dict = {}

    def lookup(self, raw_key: str):
        if not raw_key.startswith(KEY_PREFIX):
            return None
        version = version_watch.versions().get(API_KEYS_VERSION, 0)
        if version != self._version:
            with self._lock:
                if version != self._version:
                    try:
                        self._by_hash = {key.secret_hash: key for key in ApiKey.objects.live()}
                    except DatabaseError:
                        version_watch.database_failed()
                        if self._version is None:
                            raise
                        return self._by_hash.get(hash_secret(raw_key))  # the keys last read
                    self._version = version
        return self._by_hash.get(hash_secret(raw_key))

    def clear(self) -> None:
        self._version = None


key_cache = KeyCache()


def api_keys_changed(**kwargs) -> None:
    DataVersion.bump(API_KEYS_VERSION)


class ApiKeyAuth(HttpBearer):
    """A live key; with `scope`, one that has it (any live key when scope is None)."""

    def __init__(self, scope: str | None) -> None:
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str):
        key = key_cache.lookup(token)
        if key is None:
            return None
        if self.scope is not None and not key.has_scope(self.scope):
            raise ApiError(403, "missing_scope", f"This API key lacks the '{self.scope}' scope.")
        if not version_watch.degraded:
            try:
                # (in a gunicorn worker written by its refresh thread: the request makes no query)
                key.touch(later=version_watch.in_background)
            except DatabaseError:  # a record of use is not worth failing the request for
                version_watch.database_failed()
        return key


def require(scope: str | None) -> ApiKeyAuth:
    return ApiKeyAuth(scope)


any_key = ApiKeyAuth(None)
