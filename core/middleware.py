"""What every answer under /api/ gets before and after the view.

Before: input no database column can hold is refused with a 422 naming where it was — a NUL
character or a lone surrogate in a query or path parameter or anywhere in a JSON body (PostgreSQL's
text and jsonb cannot store either, and psycopg raises on them) — and a body over
`DATA_UPLOAD_MAX_MEMORY_SIZE` with a 413, before it is read. After: an error answer that is not
JSON yet (Django's 404 for an unknown path, ninja's 405, the 400 of a request Django refused, a
500 rendered outside the API) is turned into the API's error shape. Pages outside /api/ (the admin)
keep Django's own.

Also here: API calls over plain HTTP refused when HTTPS is on (`ApiHttpsRequiredMiddleware`), and
the client's address for login throttling (`client_ip`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string

from core.errors import DEFAULT_CODES, invalid_detail
from core.text import UNSTORABLE, printable, problem, unstorable_in

API_PREFIX = "/api/"
API_V1_PREFIX = "/api/v1/"
JSON_TYPE = "application/json; charset=utf-8"
# In a raw JSON body what a database column cannot hold (`core.text`) can only arrive escaped (`\u0000`, `\ud800`): JSON forbids a raw
# control character in a string, and a raw surrogate is not valid UTF-8. A NUL byte means the
# body is not UTF-8 at all (json.loads also reads UTF-16 and UTF-32), so it gets a full look too.
SUSPECT_BODY = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF][0-9a-fA-F]{2})|\x00")
MAX_REPORTED = 20


def json_error(status: int, detail: str, code: str | None = None, **extra: Any) -> JsonResponse:
    body = {"detail": detail, "code": code or DEFAULT_CODES.get(status, "error"), **extra}
    return JsonResponse(body, status=status, content_type=JSON_TYPE)


def _error(source: str, path: tuple, message: str) -> dict:
    return {"in": source, "field": ".".join(str(p) for p in path), "message": message, "type": "unstorable_text"}


def input_errors(request: HttpRequest, path_params: dict) -> list[dict]:
    errors = [
        _error("path", (name,), problem(value))
        for name, value in path_params.items()
        if isinstance(value, str) and UNSTORABLE.search(value)
    ]
    for name, values in request.GET.lists():
        if UNSTORABLE.search(name):
            errors.append(_error("query", (printable(name),), "a parameter's name must not contain a NUL character"))
            continue
        errors += [_error("query", (name,), problem(v)) for v in values if UNSTORABLE.search(v)]
    body = request.body
    if body and SUSPECT_BODY.search(body):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None  # not JSON (or nested past what json reads): the API answers that itself
        errors += [_error("body", path, message) for path, message in unstorable_in(data)]
    return errors


class ApiMiddleware:
    """For paths under /api/: refuse what cannot be stored before any view runs, and answer every
    error as JSON in the API's shape."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return self._too_large(limit)
        return as_json_error(self.get_response(request))

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        if not request.path_info.startswith(API_PREFIX):
            return None
        try:
            errors = input_errors(request, view_kwargs)
        except RequestDataTooBig:
            return self._too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if not errors:
            return None
        return json_error(422, invalid_detail(errors), "invalid", errors=errors[:MAX_REPORTED])

    @staticmethod
    def _too_large(limit: int) -> JsonResponse:
        return json_error(
            413, f"The request body is over the limit of {limit:,} bytes (LLMHIVE_MAX_BODY_BYTES).", "too_large"
        )


FALLBACK_DETAILS = {
    400: "Bad request.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "The request body is too large.",
    500: "Internal server error.",
}


def as_json_error(response: HttpResponse) -> HttpResponse:
    """An error answer that is not JSON, in the API's shape (its status and headers kept)."""
    if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    status = response.status_code
    detail = FALLBACK_DETAILS.get(status, response.reason_phrase or "Error.")
    if status == 405 and response.has_header("Allow"):
        detail = f"Method not allowed here; allowed: {response['Allow']}."
    converted = json_error(status, detail)
    for header in ("Allow", "Retry-After", "WWW-Authenticate"):
        if response.has_header(header):
            converted[header] = response[header]
    return converted


class ApiHttpsRequiredMiddleware:
    """With HTTPS on (SECURE_SSL_REDIRECT), refuse an API call made over plain HTTP with a JSON 403.

    SecurityMiddleware would redirect it to https://, but by then the Bearer key has crossed the
    network in clear, and a client that follows the redirect learns nothing is wrong. Refusing it
    makes the misconfigured client fail loudly on its first call. SECURE_REDIRECT_EXEMPT paths
    (GET /api/v1/health for load balancers) still answer over HTTP; SECURE_PROXY_SSL_HEADER is
    honoured through request.is_secure().
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.exempt = [re.compile(pattern) for pattern in settings.SECURE_REDIRECT_EXEMPT]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            settings.SECURE_SSL_REDIRECT
            and request.path.startswith(API_V1_PREFIX)
            and not request.is_secure()
            and not any(pattern.search(request.path.lstrip("/")) for pattern in self.exempt)
        ):
            return json_error(
                403,
                "This API is served over HTTPS only: call https:// (the request was refused, not redirected; "
                "if a key was sent, consider it exposed and rotate it).",
                "https_required",
            )
        return self.get_response(request)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address for login throttling: LLMHIVE_CLIENT_IP_HEADER when set (the proxy's
    header carrying the client's address), else the connection's address."""
    header = settings.LLMHIVE_CLIENT_IP_HEADER
    if header:
        value = request.META.get(header, "")
        # X-Forwarded-For style lists: the proxy appends the address it saw last.
        address = value.split(",")[-1].strip()
        if address:
            return address
    return request.META.get("REMOTE_ADDR")


def site_only(dotted: str) -> type:
    """The middleware at `dotted`, for the browser-facing site only: skipped for the JSON API
    under /api/v1/, which is authenticated by its keys and answers JSON (no session, user,
    message or content-security policy applies to it). Building a CSP header alone
    cost /route about a tenth of its time. /api/docs, a page, keeps them all. A subclass of the
    middleware it wraps, so Django's checks for it still find it."""
    inner = import_string(dotted)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_V1_PREFIX):
            return self.get_response(request)
        return inner.__call__(self, request)

    attrs = {"__call__": __call__, "__module__": __name__, "__doc__": f"{dotted}, for the site only (site_only)."}
    for hook in ("process_view", "process_exception", "process_template_response"):
        if hasattr(inner, hook):
            attrs[hook] = _site_hook(getattr(inner, hook))
    return type(inner.__name__, (inner,), attrs)


def _site_hook(hook: Callable) -> Callable:
    def for_the_site(self, request: HttpRequest, *args):
        return None if request.path_info.startswith(API_V1_PREFIX) else hook(self, request, *args)

    return for_the_site


CSPMiddleware = site_only("csp.middleware.CSPMiddleware")
SessionMiddleware = site_only("django.contrib.sessions.middleware.SessionMiddleware")
AuthenticationMiddleware = site_only("django.contrib.auth.middleware.AuthenticationMiddleware")
MessageMiddleware = site_only("django.contrib.messages.middleware.MessageMiddleware")
