"""Conditional requests: ``ETag``, ``If-None-Match`` (304) and ``If-Match`` (412)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.exceptions import PreconditionFailed

# RFC 9110 etagc: any visible ASCII except the double quote.
_ETAG_SAFE = re.compile(r"[\x21\x23-\x7e]*")


def make_etag(*parts: Any) -> str:
    """A strong ETag from the parts that identify one state of a resource.

    ``make_etag(document.id, document.version)`` gives ``"<id>-<version>"``;
    parts that could not appear in a header (quotes, spaces, non-ASCII) are
    hashed instead, so the tag is always a valid ``entity-tag``.
    """
    opaque = "-".join(str(p) for p in parts)
    if not _ETAG_SAFE.fullmatch(opaque):
        opaque = hashlib.sha256(opaque.encode()).hexdigest()[:40]
    return f'"{opaque}"'


def _parse_etags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")


def not_modified(request: Request, etag: str) -> bool:
    """True when ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(_opaque(tag) == _opaque(etag) for tag in _parse_etags(header))


def conditional_get_response(request: Request, data: Any, etag: str) -> Response:
    """The single-object GET answer: 304 when the client's copy is current."""
    if not_modified(request, etag):
        return Response(status=304, headers={"ETag": etag})
    return Response(data, headers={"ETag": etag})


def require_if_match(request: Request, current_etag: str) -> None:
    """Raise ``412 precondition_failed`` when ``If-Match`` names another state.

    No header or ``*`` passes. Strong comparison (RFC 9110 13.1.1): a weak
    validator on either side never matches. Call it inside the transaction
    that holds the row lock, before changing anything.
    """
    header = request.headers.get("If-Match")
    if not header:
        return
    if header.strip() == "*":
        return
    if current_etag.startswith("W/") or current_etag not in _parse_etags(header):
        raise PreconditionFailed()
