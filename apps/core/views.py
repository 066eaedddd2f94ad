"""Django's error handlers, answering problem+json like the API does."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse

from apps.core.exceptions import KeelError, PayloadTooLarge, problem_http_response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return problem_http_response(request, PayloadTooLarge())
    return problem_http_response(request, KeelError("The request could not be understood."))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_http_response(request, PermissionDenied())


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_http_response(request, Http404())


# Also routed as the catch-all under /api/ (config/urls.py): the access log and
# the metrics then still count the request as matching no route.
page_not_found.keel_unmatched_route = True  # type: ignore[attr-defined]


def server_error(request: HttpRequest) -> HttpResponse:
    # Never the exception itself: its text could leak internals.
    return problem_http_response(request, RuntimeError("unhandled"))
