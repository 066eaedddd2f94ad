"""Conditional requests: ``ETag``, ``If-None-Match`` (304) and ``If-Match`` (412)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.exceptions import PreconditionFailed


def make_etag(*parts: Any) -> str:
    """A strong ETag from the parts that identify one state of a resource."""
    return '"' + "-".join(str(p) for p in parts) + '"'


def _parse_etags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _weak_equal(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


def not_modified(request: Request, etag: str) -> bool:
    """True when ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110)."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(_weak_equal(tag, etag) for tag in _parse_etags(header))


def conditional_get_response(request: Request, data: Any, etag: str) -> Response:
    """The single-object GET answer: 304 when the client's copy is current."""
    if not_modified(request, etag):
        return Response(status=304, headers={"ETag": etag})
    return Response(data, headers={"ETag": etag})


def require_if_match(request: Request, current_etag: str) -> None:
    """Raise ``412 precondition_failed`` when ``If-Match`` names another state.

    Strong comparison: a weak validator never matches ``If-Match``.
    """
    header = request.headers.get("If-Match")
    if not header:
        return
    if header.strip() == "*":
        return
    if current_etag not in _parse_etags(header):
        raise PreconditionFailed()
