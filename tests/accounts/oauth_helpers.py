"""The OAuth 2.1 hosted login driven like a phone's in-app browser, and the app's token calls."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.test import Client

from apps.accounts.models import OAuthClient

REDIRECT_URI = "com.example.app:/oauth/callback"
WEB_REDIRECT_URI = "https://app.example.com/oauth/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def make_client(
    *, confidential: bool = False, redirect_uris: str | None = None, **fields: Any
) -> OAuthClient:
    client = OAuthClient(
        name=fields.pop("name", "Example App"),
        client_type=OAuthClient.CLIENT_CONFIDENTIAL if confidential else OAuthClient.CLIENT_PUBLIC,
        authorization_grant_type=OAuthClient.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect_uris or f"{REDIRECT_URI} {WEB_REDIRECT_URI}",
        **fields,
    )
    client.full_clean()
    client.save()
    return client


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} in page"
    return match.group(1)


@dataclass
class HostedFlow:
    """One sign-in through the hosted page, with the browser's cookies kept."""

    capture: Callable[..., AbstractContextManager[Any]]
    client_id: str
    redirect_uri: str = REDIRECT_URI
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    browser: Client = field(default_factory=lambda: Client(enforce_csrf_checks=True))
    verifier: str = ""
    challenge: str = ""
    page: Any = None

    def __post_init__(self) -> None:
        self.verifier, self.challenge = pkce_pair()

    def params(self, **overrides: Any) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            "state": self.state,
            "scope": "openid email",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def open(self, **overrides: Any) -> Any:
        with self.capture(execute=True):
            self.page = self.browser.get(f"/api/v1/auth/authorize?{urlencode(self.params(**overrides))}")
        return self.page

    def submit(self, action: str, *, csrf: bool = True, **fields: Any) -> Any:
        html = self.page.content.decode()
        data = {"flow": hidden(html, "flow"), "action": action, **fields}
        if csrf:
            data["csrfmiddlewaretoken"] = hidden(html, "csrfmiddlewaretoken")
        with self.capture(execute=True):
            response = self.browser.post("/api/v1/auth/authorize", data)
        if response.status_code != 302:
            self.page = response
        return response

    def sign_in(self, email: str, password: str) -> Any:
        return self.submit("password", email=email, password=password)

    @staticmethod
    def callback(response: Any) -> dict[str, str]:
        assert response.status_code == 302, response.content
        location = response["Location"]
        query = parse_qs(urlsplit(location).query)
        return {key: values[0] for key, values in query.items()}

    def token(self, code: str, **overrides: Any) -> Any:
        body = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": self.verifier,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
        }
        body.update(overrides)
        body = {k: v for k, v in body.items() if v is not None}
        with self.capture(execute=True):
            return token_post(body)


def token_post(body: dict[str, str], **headers: Any) -> Any:
    """``POST auth/token`` as OAuth clients send it (form-encoded)."""
    return Client().post(
        "/api/v1/auth/token", urlencode(body), content_type="application/x-www-form-urlencoded", **headers
    )
