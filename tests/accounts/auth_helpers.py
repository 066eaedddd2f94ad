"""Helpers for the sign-in and session tests: a client that runs on-commit work, and flows."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from io import StringIO
from typing import Any

from django.core import mail
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.factories import DEFAULT_PASSWORD

STRONG_PASSWORD = "lantern-orbit-meadow-42"
DEVICE_A = {"device_id": "device-a-install-1", "name": "iPhone A", "platform": "ios"}
DEVICE_B = {"device_id": "device-b-install-1", "name": "Pixel B", "platform": "android"}
DEVICE_C = {"device_id": "device-c-install-1", "name": "Browser C", "platform": "web"}

__all__ = ["DEFAULT_PASSWORD", "DEVICE_A", "DEVICE_B", "DEVICE_C", "STRONG_PASSWORD"]


class AuthApi:
    """JSON calls through the real HTTP stack; work queued on commit (emails, cache, sockets) runs."""

    def __init__(self, capture: Callable[..., AbstractContextManager[Any]]) -> None:
        self._capture = capture

    def call(
        self,
        method: str,
        path: str,
        data: Any = None,
        *,
        token: str | None = None,
        ip: str | None = None,
        **extra: Any,
    ) -> Any:
        client = APIClient()
        if token:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        if ip:
            extra["REMOTE_ADDR"] = ip
        with self._capture(execute=True):
            return getattr(client, method)(f"/api/v1/{path}", data, format="json", **extra)

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.call("post", path, data, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("get", path, None, **kwargs)

    def delete(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.call("delete", path, data, **kwargs)

    # Flows -----------------------------------------------------------------

    def register(self, email: str, *, device: dict[str, str] = DEVICE_A, **fields: Any) -> Any:
        request_kwargs = {
            k: fields.pop(k) for k in list(fields) if k.startswith("HTTP_") or k in ("ip", "token")
        }
        body = {"email": email, "password": STRONG_PASSWORD, "device": device, **fields}
        return self.post("auth/register", body, **request_kwargs)

    def login(
        self,
        email: str,
        password: str = DEFAULT_PASSWORD,
        *,
        device: dict[str, str] = DEVICE_A,
        **kwargs: Any,
    ) -> Any:
        body: dict[str, Any] = {"email": email, "password": password, "device": device}
        if "otp" in kwargs:
            body["otp"] = kwargs.pop("otp")
        return self.post("auth/login", body, **kwargs)

    def signed_in(
        self, email: str, password: str = DEFAULT_PASSWORD, *, device: dict[str, str] = DEVICE_A
    ) -> dict:
        response = self.login(email, password, device=device)
        assert response.status_code == 200, response.content
        return response.json()


def set_throttle_rate(monkeypatch: Any, scope: str, rate: str | None) -> None:
    """Lower (or lift) one throttle scope for a test."""
    from rest_framework.settings import api_settings

    rates = {id(api_settings.DEFAULT_THROTTLE_RATES): api_settings.DEFAULT_THROTTLE_RATES}
    rates[id(SimpleRateThrottle.THROTTLE_RATES)] = SimpleRateThrottle.THROTTLE_RATES
    for table in rates.values():
        monkeypatch.setitem(table, scope, rate)


def last_code_for(email: str) -> str:
    """The 6-digit code in the newest email to ``email``."""
    message = [m for m in mail.outbox if email in m.to][-1]
    match = re.search(r"\b(\d{6})\b", message.body)
    assert match, message.body
    return match.group(1)


def last_token_for(email: str) -> str:
    """The ``token`` query parameter of the link in the newest email to ``email``."""
    message = [m for m in mail.outbox if email in m.to][-1]
    match = re.search(r"token=([A-Za-z0-9_\-]+)", message.body)
    assert match, message.body
    return match.group(1)


@contextmanager
def captured_log_lines() -> Iterator[StringIO]:
    """Every log line as production renders it (structlog JSON, scrubbed), into a buffer."""
    root = logging.getLogger()
    formatter = next(
        (
            h.formatter
            for h in root.handlers
            if h.formatter is not None and "Processor" in type(h.formatter).__name__
        ),
        None,
    )
    assert formatter is not None, "the structured log formatter is not configured"
    buffer = StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    handler.setLevel(logging.DEBUG)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
