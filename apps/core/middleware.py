"""Request ids and the one access-log line per request."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from rest_framework.exceptions import MethodNotAllowed

from apps.core import metrics
from apps.core.exceptions import KeelError, problem_http_response
from apps.core.request_context import bind_request_id, sanitize_request_id

access_logger = structlog.get_logger("keel.access")

REQUEST_ID_HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """Accept a sane ``X-Request-ID`` or make one; bind it; echo it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = sanitize_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        bind_request_id(request_id)
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            bind_request_id(None)


def _route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None or getattr(match.func, "keel_unmatched_route", False):
        return "<unmatched>"
    return "/" + (match.route or "").lstrip("^").rstrip("$")


def _user_id_of(request: HttpRequest) -> str | None:
    # DRF authenticates lazily on its own request object and records the
    # user there; the Django request keeps what session auth found.
    user = getattr(request, "_keel_user", None) or getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


class AccessLogMiddleware:
    """One structured line per request: method, route, status, duration, user id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        duration = time.perf_counter() - started
        route = _route_of(request)
        metrics.observe_http_request(
            method=request.method or "", route=route, status=response.status_code, seconds=duration
        )
        if route not in ("/metrics", "/healthz"):
            access_logger.info(
                "request",
                method=request.method,
                route=route,
                status=response.status_code,
                duration_ms=round(duration * 1000, 2),
                user_id=_user_id_of(request),
            )
        return response


class ProblemDefaultsMiddleware:
    """Django's own answers outside DRF as problem+json like every error.

    A plain Django view's 405 becomes ``method_not_allowed``, and a
    :class:`~apps.core.exceptions.KeelError` raised by one is rendered with its
    own status and code instead of turning into a 500.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if isinstance(response, HttpResponseNotAllowed):
            problem = problem_http_response(request, MethodNotAllowed(request.method or ""))
            problem["Allow"] = response["Allow"]
            return problem
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, KeelError):
            return problem_http_response(request, exception)
        return None
