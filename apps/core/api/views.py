"""Base classes for every Keel API view.

They add what section 0 of the API contract promises on top of DRF: the
``Idempotency-Key`` contract for unsafe methods of authenticated callers, JSON
whatever the ``Accept`` header says, and the user id in the access log. Every
view under ``/api/v1/`` derives from one of these; a test walks the URL
configuration to keep it that way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import Http404, HttpResponseBase
from django.http.request import RawPostDataException
from rest_framework import generics
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.core.idempotency import (
    HEADER,
    UNSAFE_METHODS,
    IdempotencyGuard,
    IdempotentReplay,
    replay_response,
)
from apps.core.renderers import dumps


class LenientContentNegotiation(DefaultContentNegotiation):
    """Answer with the view's first renderer when ``Accept`` names none of them.

    Mobile clients and proxies send all sorts of ``Accept`` headers; the API
    speaks JSON, and an error must reach the client as the real problem
    document, not as ``406``.
    """

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (NotAcceptable, Http404):
            renderer = renderers[0]
            return renderer, renderer.media_type


def _request_body(request: Request) -> bytes:
    """What identifies the request's body in the idempotency fingerprint.

    The raw bytes, read before DRF's parsers consume the stream (Django keeps
    them for the parsers). A body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    (a file upload) is not held in memory for this: its type and length stand
    in for it.
    """
    django_request = request._request
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if limit is not None and length > limit:
        content_type = django_request.META.get("CONTENT_TYPE", "")
        return f"large body: {content_type}; {length} bytes".encode()
    try:
        return django_request.body
    except RawPostDataException:
        # Something (a permission reading request.data) consumed the stream
        # already: the parsed data stands in for it.
        try:
            return dumps(request.data)
        except TypeError:
            return repr(request.data).encode()


if TYPE_CHECKING:
    _ViewBase = APIView
else:
    _ViewBase = object


class IdempotentViewMixin(_ViewBase):
    content_negotiation_class: type[Any] = LenientContentNegotiation
    _idempotency: IdempotencyGuard | None = None

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            # Normally finalize_response has closed the transaction already.
            # Anything that escaped DRF's own handling (an error inside the
            # exception handler, a BaseException) must not leave this
            # connection inside the atomic block for the next request.
            guard, self._idempotency = self._idempotency, None
            if guard is not None:
                guard.abort()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        key = request.headers.get(HEADER)
        wants_guard = bool(key) and request.method in UNSAFE_METHODS
        user = request.user
        is_authenticated = user is not None and user.is_authenticated
        if is_authenticated:
            request._request._keel_user = user  # type: ignore[attr-defined]
        if not wants_guard or not is_authenticated:
            # Anonymous callers have no scope to keep keys in: the header is ignored.
            return
        guard = IdempotencyGuard(
            scope=str(user.pk),
            key=key or "",
            method=request.method or "",
            path=request.path,
            body=_request_body(request),
            query=request._request.META.get("QUERY_STRING", ""),
        )
        guard.begin()
        self._idempotency = guard

    def handle_exception(self, exc: Exception) -> HttpResponseBase:  # type: ignore[override]
        if isinstance(exc, IdempotentReplay):
            return replay_response(exc.record)
        return super().handle_exception(exc)

    def finalize_response(  # type: ignore[override]
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        guard, self._idempotency = self._idempotency, None
        try:
            response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            if guard is not None:
                guard.abort()
            raise
        if guard is not None:
            return guard.finish(response)
        return response


class KeelAPIView(IdempotentViewMixin, APIView):
    pass


class KeelGenericAPIView(IdempotentViewMixin, generics.GenericAPIView):  # type: ignore[type-arg]
    pass
