"""Every failure the client raises, under `OpenRouterError`, and `MalformedEntry` for one
unusable entry of a list (skipped and reported, never raised out of the client)."""

from __future__ import annotations

from typing import Any

_MESSAGE_LIMIT = 500


class OpenRouterError(Exception):
    """Base of every failure the client raises. `str()` is always one readable line."""

    def __init__(self, message: str, *, status_code: int | None = None, error_code: int | str | None = None) -> None:
        message = " ".join(str(message).split())
        if len(message) > _MESSAGE_LIMIT:
            message = message[: _MESSAGE_LIMIT - 1] + "…"
        super().__init__(message)
        self.message = message
        # The HTTP status of the answer (None when there was no answer)...
        self.status_code = status_code
        # ...and OpenRouter's own `error.code` when the body carried one (it can differ: a
        # 200 whose body says 402).
        self.error_code = error_code

    def _append(self, note: str) -> None:
        self.message = f"{self.message} {note}"
        self.args = (self.message,)


class OpenRouterUnreachable(OpenRouterError):
    """No answer: connection refused, reset or dropped, DNS failure, or a timeout."""


class OpenRouterRateLimited(OpenRouterError):
    """429 after the retries ran out."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OpenRouterServerError(OpenRouterError):
    """5xx after the retries ran out, whatever the body (a proxy's HTML 502 page included:
    it is an outage, retried like any 5xx, not a parsing problem)."""


class OpenRouterAuthError(OpenRouterError):
    """401 or 403: no key, a bad key, or a key without the right."""


class OpenRouterPaymentRequired(OpenRouterError):
    """402: the account is out of credits."""


class OpenRouterBadResponse(OpenRouterError):
    """An answer we cannot use: not JSON (an HTML page where JSON was due), cut short, the
    wrong shape, a 4xx other than 401/402/403/429, or a 200 whose body is an error. Not
    retried."""


class MalformedEntry(ValueError):
    """One entry of a list cannot be used; the reason reads as a sentence fragment. `field` names
    the entry's field at fault in OpenRouter's terms ("pricing.prompt"), when there is one."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


def error_class(code: int | None) -> type[OpenRouterError]:
    """The exception for an HTTP status (or OpenRouter's numeric `error.code`)."""
    if code in (401, 403):
        return OpenRouterAuthError
    if code == 402:
        return OpenRouterPaymentRequired
    if code == 429:
        return OpenRouterRateLimited
    if code is not None and 500 <= code <= 599:
        return OpenRouterServerError
    return OpenRouterBadResponse
