"""No passwords, tokens, codes or full email addresses in any log line."""

from __future__ import annotations

import logging

import pytest
import structlog

from apps.core.logging import REDACTED, scrub_text

use_test_urls = pytest.mark.urls("tests.core.urls")

SECRETS = {
    "password": "Tr0ub4dor&3-secret",
    "token": "tok_9f8e7d6c5b4a",
    "refresh": "rfr_0a1b2c3d4e5f",
    "code": "493817",
    "email": "carol.private@example.org",
}


def test_values_under_sensitive_keys_are_replaced(structured_logs):
    structlog.get_logger("tests.scrub").info(
        "login_attempt",
        password=SECRETS["password"],
        token=SECRETS["token"],
        refresh=SECRETS["refresh"],
        code=SECRETS["code"],
        email=SECRETS["email"],
        status_code=401,
        reset_token="rst_abcdef",
        headers={"Authorization": "Bearer abc.def.ghi", "Accept": "application/json"},
        nested={"device": {"otp": "123456", "name": "Pixel"}, "items": [{"new_password": "x1y2z3w4"}]},
    )

    (line,) = structured_logs.events("login_attempt")
    for key in ("password", "token", "refresh", "code", "email", "reset_token"):
        assert line[key] == REDACTED
    assert line["status_code"] == 401  # a code that is not a secret stays
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert line["nested"]["device"] == {"otp": REDACTED, "name": "Pixel"}
    assert line["nested"]["items"] == [{"new_password": REDACTED}]
    for secret in [*SECRETS.values(), "rst_abcdef", "abc.def.ghi", "123456", "x1y2z3w4"]:
        assert secret not in structured_logs.text


def test_email_addresses_in_free_text_are_masked(structured_logs):
    structlog.get_logger("tests.scrub").info("note", text="invited carol.private@example.org and bob@x.io")
    logging.getLogger("tests.scrub.stdlib").warning("mail to %s bounced", "dave.d@example.net")

    text = structured_logs.text
    for address in ("carol.private@example.org", "bob@x.io", "dave.d@example.net"):
        assert address not in text
    assert "c***@example.org" in text
    assert "d***@example.net" in text


def test_bearer_tokens_jwts_and_secret_parameters_in_free_text_are_masked(structured_logs):
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"
    structlog.get_logger("tests.scrub").info(
        "outgoing",
        header="Authorization: Bearer abc123xyz",
        url=f"/callback?code=998877&state=ok&password=pw123456&refresh_token={jwt}",
        body='{"token": "tk-55", "status": "ok"}',
        raw=b"refresh=rf-66",
    )
    logging.getLogger("tests.scrub.stdlib").info("got jwt %s", jwt)

    text = structured_logs.text
    for secret in ("abc123xyz", "998877", "pw123456", jwt, "tk-55", "rf-66"):
        assert secret not in text
    (line,) = structured_logs.events("outgoing")
    assert line["url"].startswith("/callback?code=[redacted]&state=ok&password=[redacted]")
    assert '"status": "ok"' in line["body"]


def test_a_logged_exception_is_scrubbed_too(structured_logs):
    try:
        raise ValueError("cannot sign in erin@example.com with password=hunter22")
    except ValueError:
        structlog.get_logger("tests.scrub").exception("sign_in_failed")

    (line,) = structured_logs.events("sign_in_failed")
    assert "ValueError" in line["exception"]
    assert "erin@example.com" not in structured_logs.text
    assert "hunter22" not in structured_logs.text


@use_test_urls
@pytest.mark.django_db
def test_a_request_that_logs_its_payload_leaks_nothing(api_client, structured_logs):
    api_client.post(
        "/api/v1/test/log",
        {"email": SECRETS["email"], "password": SECRETS["password"], "token": SECRETS["token"]},
        format="json",
        HTTP_AUTHORIZATION="Bearer not-a-real-token-but-secret",
    )

    text = structured_logs.text
    assert structured_logs.events("payload_received")
    for secret in (SECRETS["email"], SECRETS["password"], SECRETS["token"], "not-a-real-token-but-secret"):
        assert secret not in text


def test_scrub_text_keeps_harmless_text():
    assert (
        scrub_text("status_code=200 route=/api/v1/me took 3ms") == "status_code=200 route=/api/v1/me took 3ms"
    )
