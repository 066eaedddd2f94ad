"""Base classes for every Keel API view.

They add what section 0 of the API contract promises on top of DRF: the
``Idempotency-Key`` contract for unsafe methods of authenticated callers, and
the user id in the access log. Every view under ``/api/v1/`` derives from one
of these; a test walks the URL configuration to keep it that way.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.core.idempotency import (
    HEADER,
    UNSAFE_METHODS,
    IdempotencyGuard,
    IdempotentReplay,
    replay_response,
)


class IdempotentViewMixin:
    _idempotency: IdempotencyGuard | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        user = request.user
        if user is not None and user.is_authenticated:
            request._request._keel_user = user  # type: ignore[attr-defined]
        key = request.headers.get(HEADER)
        if not key or request.method not in UNSAFE_METHODS:
            return
        if user is None or not user.is_authenticated:
            return
        guard = IdempotencyGuard(
            scope=str(user.pk),
            key=key,
            method=request.method,
            path=request.path,
            body=request._request.body,
        )
        guard.begin()
        self._idempotency = guard

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, IdempotentReplay):
            return replay_response(exc.record)
        return super().handle_exception(exc)  # type: ignore[misc, no-any-return]

    def finalize_response(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        guard, self._idempotency = self._idempotency, None
        try:
            response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        except BaseException:
            if guard is not None:
                guard.abort()
            raise
        if guard is not None:
            return guard.finish(response)  # type: ignore[arg-type]
        return response


class KeelAPIView(IdempotentViewMixin, APIView):
    pass


class KeelGenericAPIView(IdempotentViewMixin, generics.GenericAPIView):  # type: ignore[type-arg]
    pass
