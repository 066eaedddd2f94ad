"""Structured JSON logs (structlog over the standard library) with PII scrubbing.

Every line carries the current ``request_id``. Values under keys that look
like secrets are replaced, and anything shaped like an email address is
masked, so a careless ``log.info(..., payload=request.data)`` cannot leak a
password, a token or an address.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

SENSITIVE_KEYS = frozenset(
    {
        "password",
        "old_password",
        "new_password",
        "token",
        "access",
        "refresh",
        "access_token",
        "refresh_token",
        "id_token",
        "authorization",
        "secret",
        "code",
        "otp",
        "mfa_token",
        "email",
        "phone",
        "cookie",
        "api_key",
        "client_secret",
        "code_verifier",
        "signed_transaction",
        "purchase_token",
        "recovery_code",
        "recovery_codes",
        "verification_code",
    }
)
# Any key containing one of these is a secret too (``reset_token``,
# ``password_confirm``, ``HTTP_AUTHORIZATION``, ``stripe_secret_key``...).
# Short words such as ``code`` only count as whole keys: ``status_code`` is
# not a secret.
SENSITIVE_KEY_FRAGMENTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "private_key",
    "session_key",
)
REDACTED = "[redacted]"
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Names whose value is a secret in free text: long words also with a prefix
# (``reset_token``), short ones only alone (``code`` but not ``status_code``).
_FREE_TEXT_KEYS = (
    r"\w*(?:password|passwd|secret|token|api_key)\w*|refresh|access|code|otp|code_verifier|email"
)
# ``password=hunter2`` in a query string or form body, ``"token": "abc"`` in JSON text.
_KEY_EQUALS = re.compile(rf"(?i)\b({_FREE_TEXT_KEYS})=[^&\s]+")
_JSON_PAIR = re.compile(rf'(?i)"({_FREE_TEXT_KEYS})"(\s*:\s*)"(?:[^"\\]|\\.)*"')


# Every pattern above needs one of these: text without any is returned as it is
# with one search instead of five substitutions (most log values are such text).
_MAYBE_SECRET = re.compile(r"[@=\"]|eyJ|(?i:bearer|basic)\s")


def scrub_text(value: str) -> str:
    """Mask secrets and email addresses inside free text."""
    if _MAYBE_SECRET.search(value) is None:
        return value
    value = _EMAIL.sub(r"\1***@\2", value)
    value = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    value = _JWT.sub(REDACTED, value)
    value = _KEY_EQUALS.sub(lambda m: f"{m.group(1)}={REDACTED}", value)
    return _JSON_PAIR.sub(lambda m: f'"{m.group(1)}"{m.group(2)}"{REDACTED}"', value)


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, (bytes, bytearray)):
        return scrub_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_sensitive(k) else scrub_value(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub_value(v) for v in value]
    return value


def _is_sensitive(key: object) -> bool:
    if not isinstance(key, str):
        return False
    return _is_sensitive_name(key)


@functools.lru_cache(maxsize=4096)
def _is_sensitive_name(key: str) -> bool:
    # Keys are names from the code (a few hundred at most): each is judged once.
    lowered = key.lower()
    return lowered in SENSITIVE_KEYS or any(fragment in lowered for fragment in SENSITIVE_KEY_FRAGMENTS)


_STRUCTLOG_META_KEYS = frozenset({"exc_info", "_record", "_from_structlog"})


def scrub_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict.keys()):
        if key in _STRUCTLOG_META_KEYS:
            continue
        event_dict[key] = REDACTED if _is_sensitive(key) else scrub_value(event_dict[key])
    return event_dict


def configure_logging(*, level: str = "INFO", fmt: str = "json") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub_event,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structured": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info,
                        # Again after the traceback became text: an exception
                        # message can quote an address or a token.
                        scrub_event,
                        renderer,
                    ],
                    "foreign_pre_chain": shared,
                }
            },
            "handlers": {
                "stdout": {
                    "class": "logging.StreamHandler",
                    "stream": sys.stdout,
                    "formatter": "structured",
                }
            },
            "root": {"handlers": ["stdout"], "level": level},
            "loggers": {
                # The access log line is ours; Django's own request logger and
                # the servers' access logs would duplicate it.
                "django.request": {"level": "ERROR"},
                "django.server": {"level": "WARNING"},
                "uvicorn.access": {"level": "WARNING"},
                "gunicorn.access": {"level": "WARNING"},
                "django.db.backends": {"level": "WARNING"},
            },
        }
    )
