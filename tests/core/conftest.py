"""Fixtures for the core convention tests."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from django.core.cache import cache
from rest_framework.test import APIClient


class CapturedLogs:
    """What the configured JSON log handler wrote while the fixture was active."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]


@pytest.fixture
def structured_logs() -> Iterator[CapturedLogs]:
    """Capture log output through the project's own formatter (structlog JSON + scrubbing)."""
    root = logging.getLogger()
    formatter = next(
        (
            handler.formatter
            for handler in root.handlers
            if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
        ),
        None,
    )
    assert formatter is not None, "apps.core.logging.configure_logging did not install its formatter"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    try:
        yield CapturedLogs(stream)
    finally:
        root.removeHandler(handler)


@pytest.fixture
def lenient_client() -> APIClient:
    """A client that receives the 500 answer instead of re-raising the server's exception."""
    return APIClient(raise_request_exception=False)


@pytest.fixture
def throttle_rates(settings: Any) -> Iterator[Any]:
    """Set throttle rates by scope for one test (``throttle_rates(core_test="2/min")``).

    The cache holding the throttles' histories starts empty and is emptied again afterwards.
    """

    def configure(**rates: str | None) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
        }

    cache.clear()
    yield configure
    cache.clear()
