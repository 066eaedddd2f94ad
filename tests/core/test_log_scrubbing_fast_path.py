"""scrub_text skips text that none of its patterns can match; the answer is the same either way."""

from __future__ import annotations

import pytest

from apps.core import logging as keel_logging

SAMPLES = [
    "GET",
    "/api/v1/collections/tasks/documents",
    "request",
    "keel.access",
    "2026-11-21T23:00:00.000000Z",
    "5f0c6a43-7f57-4d1e-9a1a-5c8e0d7e1f22",
    "ada@example.com wrote",
    "Authorization: Bearer abc.def-ghi",
    "basic dXNlcjpwYXNz",
    "BASIC\tdXNlcjpwYXNz",
    "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "password=hunter2&next=/",
    '{"refresh": "abc", "name": "x"}',
    "status_code=200",
    "bearer",  # no token after it: unchanged either way
    "nothing to see here",
    "",
]


def _reference(value: str) -> str:
    value = keel_logging._EMAIL.sub(r"\1***@\2", value)
    value = keel_logging._AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {keel_logging.REDACTED}", value)
    value = keel_logging._JWT.sub(keel_logging.REDACTED, value)
    value = keel_logging._KEY_EQUALS.sub(lambda m: f"{m.group(1)}={keel_logging.REDACTED}", value)
    return keel_logging._JSON_PAIR.sub(
        lambda m: f'"{m.group(1)}"{m.group(2)}"{keel_logging.REDACTED}"', value
    )


@pytest.mark.parametrize("value", SAMPLES)
def test_scrub_text_matches_the_full_scrub(value):
    assert keel_logging.scrub_text(value) == _reference(value)


def test_secrets_are_still_masked():
    assert "hunter2" not in keel_logging.scrub_text("password=hunter2")
    assert keel_logging.scrub_text("ada@example.com") == "a***@example.com"


def test_sensitive_keys_are_judged_the_same_when_remembered():
    for _ in range(2):
        assert keel_logging._is_sensitive("reset_token") is True
        assert keel_logging._is_sensitive("status_code") is False
        assert keel_logging._is_sensitive("CODE") is True
        assert keel_logging._is_sensitive(3) is False
