"""orjson rendering and parsing: UTC timestamps with Z, UUIDs and decimals as strings."""

from __future__ import annotations

import datetime
import io
import uuid
from decimal import Decimal

import orjson
import pytest
from django.test import override_settings
from rest_framework.exceptions import ParseError

from apps.core.exceptions import PayloadTooLarge
from apps.core.parsers import ORJSONParser
from apps.core.renderers import ORJSONRenderer


def render(data) -> dict:
    return orjson.loads(ORJSONRenderer().render(data))


def test_datetimes_are_iso_8601_in_utc_with_z():
    rendered = render(
        {
            "utc": datetime.datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=datetime.UTC),
            "berlin": datetime.datetime(
                2026, 11, 21, 11, 0, 0, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
            ),
            "naive": datetime.datetime(2026, 11, 21, 10, 0, 0),
            "nested": [{"at": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}],
        }
    )

    assert rendered["utc"] == "2026-11-21T10:00:00.123456Z"
    assert rendered["berlin"] == "2026-11-21T10:00:00.123456Z"
    assert rendered["naive"] == "2026-11-21T10:00:00Z"
    assert rendered["nested"][0]["at"] == "2026-01-01T00:00:00Z"


def test_uuids_decimals_and_dates_are_strings():
    rendered = render(
        {
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "price": Decimal("19.90"),
            "day": datetime.date(2026, 11, 21),
        }
    )

    assert rendered == {"id": "12345678-1234-5678-1234-567812345678", "price": "19.90", "day": "2026-11-21"}


def test_none_renders_an_empty_body():
    assert ORJSONRenderer().render(None) == b""


def test_an_unknown_type_is_an_error_not_a_silent_repr():
    with pytest.raises(TypeError):
        ORJSONRenderer().render({"x": object()})


@pytest.mark.urls("tests.core.urls")
@pytest.mark.django_db
def test_an_api_response_is_utf8_json_with_utc_timestamps(api_client):
    response = api_client.get("/api/v1/test/render")

    assert response["Content-Type"] == "application/json"
    body = orjson.loads(response.content)
    assert body["aware_utc"] == "2026-11-21T10:00:00.123456Z"
    assert body["aware_offset"] == "2026-11-21T10:00:00Z"
    assert body["uuid"] == "12345678-1234-5678-1234-567812345678"
    assert body["decimal"] == "19.90"
    assert "grüße".encode() in response.content  # raw UTF-8, no \u escapes


def test_the_parser_reads_json():
    parsed = ORJSONParser().parse(io.BytesIO('{"a": [1, 2.5, null], "b": "ü"}'.encode()))

    assert parsed == {"a": [1, 2.5, None], "b": "ü"}


@pytest.mark.parametrize("raw", [b'{"a": 1,', b"{'a': 1}", b"\xff\xfe", b"NaN", b'{"a": 1} trailing'])
def test_the_parser_rejects_malformed_json(raw):
    with pytest.raises(ParseError):
        ORJSONParser().parse(io.BytesIO(raw))


def test_the_parser_treats_an_empty_body_as_an_empty_object():
    assert ORJSONParser().parse(io.BytesIO(b"")) == {}


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10)
def test_the_parser_refuses_a_body_over_the_limit_even_without_content_length():
    assert ORJSONParser().parse(io.BytesIO(b'{"a": 123}')) == {"a": 123}  # exactly 10 bytes
    with pytest.raises(PayloadTooLarge):
        ORJSONParser().parse(io.BytesIO(b'{"a": 1234}'))


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None)
def test_the_parser_works_without_a_limit():
    assert ORJSONParser().parse(io.BytesIO(b'{"a": "' + b"x" * 10_000 + b'"}'))["a"] == "x" * 10_000
