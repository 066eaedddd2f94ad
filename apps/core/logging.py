"""Structured JSON logs (structlog over the standard library) with PII scrubbing.

Every line carries the current ``request_id``. Values under keys that look
like secrets are replaced, and anything shaped like an email address is
masked, so a careless ``log.info(..., payload=request.data)`` cannot leak a
password, a token or an address.
"""

from __future__ import annotations

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
    }
)
REDACTED = "[redacted]"
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return _BEARER.sub("Bearer [redacted]", _EMAIL.sub(r"\1***@\2", value))
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_sensitive(k) else scrub_value(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(v) for v in value]
    return value


def _is_sensitive(key: object) -> bool:
    return isinstance(key, str) and key.lower() in SENSITIVE_KEYS


def scrub_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict.keys()):
        if key in ("exc_info", "_record", "_from_structlog"):
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
