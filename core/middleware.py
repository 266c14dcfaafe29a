"""Request guards that run before any view: HTTPS for API calls, the client's address for axes."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/v1/"


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
            and request.path.startswith(API_PREFIX)
            and not request.is_secure()
            and not any(pattern.search(request.path.lstrip("/")) for pattern in self.exempt)
        ):
            return JsonResponse(
                {
                    "detail": "This API is served over HTTPS only: call https:// (the request was refused, "
                    "not redirected; if a key was sent, consider it exposed and rotate it).",
                    "code": "https_required",
                },
                status=403,
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
