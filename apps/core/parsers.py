"""orjson parsing, with the body size limit answered as ``413 payload_too_large``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from apps.core.exceptions import PayloadTooLarge


class ORJSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        if stream is None:
            return {}
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None:
            raw = stream.read()
        else:
            # One byte more than allowed tells an oversized body (also a
            # chunked one without Content-Length) from one that fits.
            raw = stream.read(limit + 1)
            if len(raw) > limit:
                raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        if not raw:
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc
