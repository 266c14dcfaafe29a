"""The API's one error shape: {"detail": "...", "code": "..."}, plus "errors" on 422."""

from __future__ import annotations

import logging
from typing import Any

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "budget_exhausted",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "throttled",
    500: "internal_error",
    503: "unavailable",
}

logger = logging.getLogger("llmhive.api")

# What a 503 for an unreachable database asks the client to wait before trying again, in seconds.
DATABASE_RETRY_AFTER = 5


# "in" is a keyword: the functional form is the only way to name a field so.
FieldErrorOut = TypedDict("FieldErrorOut", {"in": str, "field": str, "message": str, "type": str})


class ErrorOut(BaseModel):
    """Every error answer under /api/: what went wrong for a person, a code for a program."""

    # Some answers carry more, named by their code: `budget` on 402, `rejected` on
    # `no_eligible_model`, `known` on `unknown_category`; the schema lets them through.
    model_config = ConfigDict(extra="allow", title="ErrorOut")

    detail: str = Field(description="what went wrong, for a person to read")
    code: str = Field(description="what went wrong, for a program: `invalid`, `unauthorized`, `missing_scope`...")
    errors: list[FieldErrorOut] | None = Field(
        None, description="on 422: each invalid field, with where it was (body, query, path) and why"
    )


def errors(*statuses: int) -> dict[int, type[ErrorOut]]:
    """The error answers an operation can give, for its `response=`:
    `response={200: ModelPage, **errors(401, 403, 422)}`. Exception handlers build these answers,
    not the view, so declaring them documents the API and changes nothing at run time."""
    unknown = set(statuses) - set(DEFAULT_CODES) - {413, 500}
    if unknown:
        raise ValueError(f"no error answer for status {sorted(unknown)}")
    return dict.fromkeys(statuses, ErrorOut)


class ApiError(HttpError):
    """An HttpError with a machine-readable code and optional extra fields in the body."""

    def __init__(self, status_code: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(status_code, detail)
        self.code = code
        self.extra = extra


def _field_path(loc: list | tuple) -> tuple[str, str]:
    """('body', 'payload', 'events', 3, 'model') -> ('body', 'events.3.model')."""
    source, *rest = list(loc) or ["body"]
    source = str(source)
    # ninja puts the name of the view's parameter first for a body (`payload`) and for a query
    # schema (`filters: Query[ReportFilters]` gives ('query', 'filters', 'start')); callers never
    # see those names. A plain query parameter is ('query', 'start'), or ('query', 'capability', 0)
    # for an item of a list: a name followed by a name is a schema's parameter and its field.
    if (source == "body" and rest[:1] == ["payload"]) or (
        source == "query" and len(rest) >= 2 and isinstance(rest[1], str)
    ):
        rest = rest[1:]
    return source, ".".join(str(part) for part in rest)


def invalid_detail(errors: list[dict]) -> str:
    """A 422's one-line detail: the first bad field and its message, and how many more follow."""
    first = errors[0] if errors else {"field": "", "message": "invalid input"}
    detail = f"{first['field'] or first.get('in', 'input')}: {first['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return detail


def install_error_handlers(api: NinjaAPI) -> None:
    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        code = getattr(exc, "code", None) or DEFAULT_CODES.get(exc.status_code, "error")
        body = {"detail": str(exc), "code": code, **getattr(exc, "extra", {})}
        return api.create_response(request, body, status=exc.status_code)

    def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        body = {"detail": "Missing or invalid API key: send 'Authorization: Bearer <key>'.", "code": "unauthorized"}
        response = api.create_response(request, body, status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response

    def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        errors = []
        for error in exc.errors:
            source, field = _field_path(error.get("loc", ()))
            errors.append(
                {"in": source, "field": field, "message": error.get("msg", "invalid"), "type": error.get("type", "")}
            )
        return api.create_response(
            request, {"detail": invalid_detail(errors), "code": "invalid", "errors": errors}, status=422
        )

    def on_404(request: HttpRequest, exc: Http404) -> HttpResponse:
        return api.create_response(request, {"detail": str(exc) or "Not found.", "code": "not_found"}, status=404)

    def on_unhandled(request: HttpRequest, exc: Exception) -> HttpResponse:
        # The traceback goes to the log (and to whatever listens for Django's signal, as for any
        # uncaught exception); the client gets the API's shape and no internals.
        logger.error("Internal server error: %s %s", request.method, request.path, exc_info=exc)
        got_request_exception.send(sender=None, request=request)
        body = {"detail": "Internal server error: the failure is logged.", "code": "internal_error"}
        return api.create_response(request, body, status=500)

    api.add_exception_handler(Exception, on_unhandled)
    api.add_exception_handler(HttpError, on_http_error)
    api.add_exception_handler(AuthenticationError, on_auth_error)
    api.add_exception_handler(ValidationError, on_validation_error)
    api.add_exception_handler(Http404, on_404)

    def on_database_down(request: HttpRequest, exc: OperationalError | InterfaceError) -> HttpResponse:
        # The database is unreachable (or gave up on this statement): a 503 the client may retry,
        # never a 500. A write was inside its transaction, so nothing of it is half-stored.
        from core.models import version_watch

        version_watch.database_failed()
        body = {"detail": "The database is unavailable; try again shortly.", "code": "unavailable"}
        response = api.create_response(request, body, status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response

    api.add_exception_handler(OperationalError, on_database_down)
    api.add_exception_handler(InterfaceError, on_database_down)
