"""Domain errors with stable codes, and the one handler that renders every error.

Every error leaves Keel as an RFC 9457 problem document
(``application/problem+json``) with ``type``, ``title``, ``status``, a stable
machine ``code``, ``detail``, ``request_id`` and, for validation errors,
``errors`` keyed by field. Services raise :class:`KeelError` subclasses; the
handler also translates DRF's and Django's own exceptions, and turns anything
unexpected into a 500 that never shows a traceback.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from apps.core.renderers import ProblemJSONRenderer, dumps
from apps.core.request_context import get_request_id

logger = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://keel.dev/problems/"


class KeelError(Exception):
    """A domain error. ``code`` is part of the public contract: never rename one."""

    status_code = 400
    code = "bad_request"
    title = "Bad request"
    default_detail = "The request could not be processed."

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(self.detail)


class ValidationFailed(KeelError):
    status_code = 400
    code = "validation_error"
    title = "Validation failed"
    default_detail = "One or more fields are invalid."


class InvalidQuery(KeelError):
    status_code = 400
    code = "invalid_query"
    title = "Invalid query"
    default_detail = "The query is not valid."


class NotAuthenticated(KeelError):
    status_code = 401
    code = "not_authenticated"
    title = "Not authenticated"
    default_detail = "Authentication credentials were not provided."


class InvalidToken(KeelError):
    status_code = 401
    code = "invalid_token"
    title = "Invalid token"
    default_detail = "The token is invalid or expired."


class PermissionDeniedError(KeelError):
    status_code = 403
    code = "permission_denied"
    title = "Permission denied"
    default_detail = "You do not have permission to perform this action."


class NotFound(KeelError):
    status_code = 404
    code = "not_found"
    title = "Not found"
    default_detail = "Not found."


class Conflict(KeelError):
    status_code = 409
    code = "conflict"
    title = "Conflict"
    default_detail = "The request conflicts with the current state."


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    title = "Idempotency key reused"
    default_detail = "This Idempotency-Key was already used with a different request."


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"
    title = "Request in progress"
    default_detail = "A request with this Idempotency-Key is still being processed; retry later."


class Gone(KeelError):
    status_code = 410
    code = "gone"
    title = "Gone"
    default_detail = "The resource is no longer available."


class PreconditionFailed(KeelError):
    status_code = 412
    code = "precondition_failed"
    title = "Precondition failed"
    default_detail = "The resource has changed since the version given in If-Match."


class PayloadTooLarge(KeelError):
    status_code = 413
    code = "payload_too_large"
    title = "Payload too large"
    default_detail = "The request body is too large."


class Throttled(KeelError):
    status_code = 429
    code = "throttled"
    title = "Too many requests"
    default_detail = "Request was throttled."

    def __init__(self, wait: float | None = None, detail: str | None = None) -> None:
        seconds = retry_after_seconds(wait)
        if detail is None:
            detail = f"Request was throttled. Expected available in {seconds} seconds."
        super().__init__(detail, headers={"Retry-After": str(seconds)})


def retry_after_seconds(wait: float | None) -> int:
    """Whole seconds for ``Retry-After``: rounded up, at least 1 (also when unknown)."""
    if wait is None:
        return 1
    return max(1, math.ceil(wait))


# --- Rendering ---------------------------------------------------------------

_DRF_CODES: dict[type[Exception], tuple[str, str]] = {
    drf_exceptions.ParseError: ("malformed_request", "Malformed request"),
    drf_exceptions.AuthenticationFailed: ("invalid_token", "Authentication failed"),
    drf_exceptions.NotAuthenticated: ("not_authenticated", "Not authenticated"),
    drf_exceptions.PermissionDenied: ("permission_denied", "Permission denied"),
    drf_exceptions.NotFound: ("not_found", "Not found"),
    drf_exceptions.MethodNotAllowed: ("method_not_allowed", "Method not allowed"),
    drf_exceptions.NotAcceptable: ("not_acceptable", "Not acceptable"),
    drf_exceptions.UnsupportedMediaType: ("unsupported_media_type", "Unsupported media type"),
    drf_exceptions.Throttled: ("throttled", "Too many requests"),
    drf_exceptions.ValidationError: ("validation_error", "Validation failed"),
}


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_TYPE_BASE}{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "request_id": get_request_id(),
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return body


def _flatten_errors(data: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error structure as ``{"field.sub": ["message"]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten_errors(value, name))
    elif isinstance(data, list):
        if not data:
            return out
        if all(not isinstance(item, (dict, list)) for item in data):
            out[prefix or "non_field_errors"] = [str(item) for item in data]
        else:
            # A list of nested serializers: one entry per item, empty ones skipped.
            for index, item in enumerate(data):
                if isinstance(item, (dict, list)):
                    out.update(_flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
                else:
                    out.setdefault(prefix or "non_field_errors", []).append(str(item))
    else:
        out[prefix or "non_field_errors"] = [str(data)]
    return out


class ProblemResponse(Response):
    """A DRF response that is always rendered as ``application/problem+json``.

    DRF's ``finalize_response`` hands every response the renderer negotiated
    for the request (an HTML one on a view that offers HTML, say). A problem
    document is JSON whatever the request's ``Accept`` said, so the renderer is
    fixed at render time.
    """

    @property
    def rendered_content(self) -> bytes:  # type: ignore[override]
        self.accepted_renderer = ProblemJSONRenderer()
        self.accepted_media_type = PROBLEM_CONTENT_TYPE
        self.renderer_context = getattr(self, "renderer_context", None) or {}
        self.content_type = PROBLEM_CONTENT_TYPE
        return super().rendered_content  # type: ignore[no-any-return]


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = ProblemResponse(body, status=body["status"], headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    response.accepted_renderer = ProblemJSONRenderer()
    response.accepted_media_type = PROBLEM_CONTENT_TYPE
    response.renderer_context = {}
    return response


def problem_for_exception(exc: BaseException) -> tuple[dict[str, Any], dict[str, str]]:
    """The problem document and headers for any exception."""
    if isinstance(exc, KeelError):
        return (
            problem_body(
                status=exc.status_code,
                code=exc.code,
                title=exc.title,
                detail=exc.detail,
                errors=exc.errors,
                extra=exc.extra,
            ),
            exc.headers,
        )
    if isinstance(exc, Http404):
        return problem_body(status=404, code="not_found", title="Not found", detail="Not found."), {}
    if isinstance(exc, DjangoPermissionDenied):
        return (
            problem_body(
                status=403,
                code="permission_denied",
                title="Permission denied",
                detail="You do not have permission to perform this action.",
            ),
            {},
        )
    if isinstance(exc, RequestDataTooBig):
        return problem_for_exception(PayloadTooLarge())
    if isinstance(exc, SuspiciousOperation):
        # Django's own refusals (too many fields, a bad Host, ...): the
        # client's fault, never a 500.
        return (
            problem_body(
                status=400,
                code="bad_request",
                title="Bad request",
                detail="The request could not be understood.",
            ),
            {},
        )
    if isinstance(exc, DjangoValidationError):
        errors = (
            {k: [str(m) for m in v] for k, v in exc.message_dict.items()}
            if hasattr(exc, "error_dict")
            else {"non_field_errors": [str(m) for m in exc.messages]}
        )
        return (
            problem_body(
                status=400,
                code="validation_error",
                title="Validation failed",
                detail="One or more fields are invalid.",
                errors=errors,
            ),
            {},
        )
    if isinstance(exc, drf_exceptions.APIException):
        code, title = next(
            (v for k, v in _DRF_CODES.items() if isinstance(exc, k)),
            (str(exc.default_code), "Error"),
        )
        headers: dict[str, str] = {}
        if isinstance(exc, drf_exceptions.Throttled):
            headers["Retry-After"] = str(retry_after_seconds(getattr(exc, "wait", None)))
        if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        drf_errors: dict[str, list[str]] | None = None
        if isinstance(exc, drf_exceptions.ValidationError):
            drf_errors = _flatten_errors(exc.detail)
            detail = "One or more fields are invalid."
        else:
            detail = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else title
        return (
            problem_body(
                status=exc.status_code,
                code=code,
                title=title,
                detail=detail,
                errors=drf_errors,
            ),
            headers,
        )
    return (
        problem_body(
            status=500,
            code="server_error",
            title="Internal server error",
            detail="Something went wrong on our side. Quote the request id when reporting it.",
        ),
        {},
    )


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's ``EXCEPTION_HANDLER``: every error of an API view as problem+json."""
    body, headers = problem_for_exception(exc)
    if body["status"] >= 500:
        # Logged with the traceback (Sentry picks error logs up); the client
        # only ever sees the request id.
        logger.error("unhandled_exception", exc_info=exc)
    return problem_response(body, headers)


def problem_http_response(request: HttpRequest | None, exc: BaseException) -> HttpResponse:
    """A plain Django response carrying a problem document (outside DRF views)."""
    body, headers = problem_for_exception(exc)
    response = HttpResponse(dumps(body), status=body["status"], content_type=PROBLEM_CONTENT_TYPE)
    for name, value in headers.items():
        response[name] = value
    return response
