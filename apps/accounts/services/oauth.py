"""OAuth 2.1 authorization code + PKCE, for apps that prefer a hosted login (AppAuth).

django-oauth-toolkit (over oauthlib) validates the requests: the client, the
exact redirect URI, PKCE (``S256`` only), the single-use code and its 60 s
lifetime, client authentication for confidential clients. What it would
normally issue at the end is replaced by Keel's own session tokens, so an app
signed in this way calls every endpoint exactly like one that used
``POST auth/login``:

1. ``GET auth/authorize`` validates the request and shows the hosted page.
2. The user signs in there (password, then MFA and new-device step-up as
   needed, all through :mod:`apps.accounts.services.login`); that opens a
   Keel session (``via="oauth"``). Its first token pair is sealed into an
   :class:`~apps.accounts.models.OAuthAuthorization` under a key derived from
   the authorization code, and the browser goes back to the app with the code.
3. ``POST auth/token`` checks the code and the ``code_verifier`` and hands the
   sealed pair over, once. A code presented again revokes that session (RFC
   6749 4.1.2); a code that expired unused has its session revoked too.

The ``id_token`` is an RS256 JWT signed with ``OIDC_RSA_PRIVATE_KEY`` (a
generated key under ``KEEL_VAR_DIR`` when unset), published at
``/.well-known/jwks.json``; RS256 rather than HS256 with the client secret
because native apps are public clients without a secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import Grant
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2 import FatalClientError, OAuth2Error, Server
from oauthlib.oauth2.rfc6749 import errors as oauth_errors

from apps.accounts.models import AuditEvent, OAuthAuthorization, OAuthClient, User
from apps.accounts.services.audit import audit_record
from apps.accounts.services.login import (
    AccountLocked,
    InvalidCredentials,
    lockout_clear,
    lockout_is_locked,
    lockout_register_failure,
    login_after_first_factor,
    login_ident,
    login_with_password,
)
from apps.accounts.services.sessions import IssuedTokens, tokens_seal, tokens_unseal
from apps.core.exceptions import KeelError
from apps.core.metrics import AUTH_LOGIN_FAILURES
from apps.core.throttling import throttle_hit

logger = structlog.get_logger(__name__)

AUTHORIZE_PATH = "/api/v1/auth/authorize"
TOKEN_PATH = "/api/v1/auth/token"
JWKS_PATH = "/.well-known/jwks.json"
# How long a reuse of an exchanged code is still recognised (and punished).
_AUTHORIZATION_RETENTION = timedelta(days=1)
_S256_CHALLENGE_LENGTH = 43  # base64url of a SHA-256 digest, unpadded
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# --- Sealing the first token pair under the code ------------------------------


def _code_digest(code: str) -> str:
    return hashlib.sha256(f"keel:oauth-code:{code}".encode()).hexdigest()


def _seal_material(code: str) -> str:
    return f"oauth-code-seal:{code}"


def _authorization_revoke(authorization: OAuthAuthorization, *, reason: str) -> None:
    """Revoke the session a code opened (reused or expired code); idempotent."""
    from apps.accounts.services.sessions import session_revoke

    updated = OAuthAuthorization.objects.filter(pk=authorization.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), sealed_tokens=""
    )
    if not updated:
        return
    session_revoke(session_id=str(authorization.session_id), reason=reason)
    logger.warning("oauth_code_session_revoked", session_id=str(authorization.session_id), reason=reason)


def _code_refused(*, code: str | None, client: Any) -> None:
    """A code of ``client`` that is unknown, expired or already exchanged was presented.

    The last two are codes Keel issued: their session is revoked (a replay,
    or tokens that nobody collected in time).
    """
    authorization = (
        OAuthAuthorization.objects.filter(code_digest=_code_digest(code or ""), application=client)
        .select_related("user")
        .first()
    )
    if authorization is None or authorization.revoked_at is not None:
        return
    reused = authorization.exchanged_at is not None
    if reused:
        audit_record(
            kind=AuditEvent.Kind.TOKEN_REUSED,
            target=authorization.user,
            data={"via": "oauth_code", "session_id": str(authorization.session_id)},
        )
    _authorization_revoke(authorization, reason="oauth_code_reused" if reused else "oauth_code_expired")


# --- The validator: django-oauth-toolkit's, ending in Keel sessions ----------


class KeelOAuth2Validator(OAuth2Validator):  # type: ignore[misc]
    """django-oauth-toolkit's validator, restricted to the code flow, issuing Keel tokens."""

    def validate_response_type(
        self, client_id: str, response_type: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        return response_type == "code" and bool(
            client.allows_grant_type(OAuthClient.GRANT_AUTHORIZATION_CODE)
        )

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        return grant_type == "authorization_code" and bool(
            super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)
        )

    def is_pkce_required(self, client_id: str, request: Any) -> bool:
        return True

    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        if super().validate_code(client_id, code, client, request, *args, **kwargs):
            return True
        _code_refused(code=code, client=client)
        return False

    def _grant(self, code: str, client: Any, request: Any) -> Grant:
        """The code's grant; a concurrent exchange may have consumed it since ``validate_code``."""
        grant = Grant.objects.filter(code=code, application=client).first()
        if grant is None:
            _code_refused(code=code, client=client)
            raise oauth_errors.InvalidGrantError(request=request)
        return grant

    def get_code_challenge(self, code: str, request: Any) -> str | None:
        return self._grant(code, request.client, request).code_challenge or None

    def get_code_challenge_method(self, code: str, request: Any) -> str | None:
        return self._grant(code, request.client, request).code_challenge_method or None

    def confirm_redirect_uri(
        self,
        client_id: str,
        code: str,
        redirect_uri: str,
        client: Any,
        request: Any,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        return bool(self._grant(code, client, request).redirect_uri_allowed(redirect_uri))

    def save_authorization_code(
        self, client_id: str, code: dict[str, str], request: Any, *args: Any, **kwargs: Any
    ) -> None:
        tokens: IssuedTokens | None = getattr(request, "keel_tokens", None)
        if tokens is None:
            raise oauth_errors.ServerError(description="The sign-in did not open a session.", request=request)
        grant = self._create_authorization_code(request, code)
        OAuthAuthorization.objects.create(
            application=request.client,
            user=request.user,
            session_id=tokens.session_id,
            code_digest=_code_digest(code["code"]),
            sealed_tokens=tokens_seal(material=_seal_material(code["code"]), issued=tokens),
            expires_at=grant.expires,
        )

    def save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> None:
        """Hand over the session tokens sealed under this code, exactly once.

        Locks the authorization row, so of two exchanges of one code racing
        each other only one gets the tokens; the other counts as a reuse.
        """
        now = timezone.now()
        reused: OAuthAuthorization | None = None
        with transaction.atomic():
            authorization = (
                OAuthAuthorization.objects.select_for_update()
                .select_related("user")
                .filter(code_digest=_code_digest(request.code), application=request.client)
                .first()
            )
            if authorization is None or authorization.revoked_at is not None:
                raise oauth_errors.InvalidGrantError(request=request)
            tokens = None
            if authorization.exchanged_at is None:
                tokens = tokens_unseal(
                    material=_seal_material(request.code),
                    sealed=authorization.sealed_tokens,
                    user=authorization.user,
                )
            if tokens is None:
                reused = authorization
            else:
                authorization.exchanged_at = now
                authorization.sealed_tokens = ""
                authorization.save(update_fields=["exchanged_at", "sealed_tokens"])
        if reused is not None:
            _authorization_revoke(reused, reason="oauth_code_reused")
            raise oauth_errors.InvalidGrantError(request=request)
        assert tokens is not None
        user = authorization.user
        token.clear()
        token.update(
            _token_body(
                tokens=tokens,
                user=user,
                client_id=request.client.client_id,
                nonce=request.nonce or None,
                auth_time=authorization.created_at,
                scope=" ".join(request.scopes or []),
            )
        )
        audit_record(
            kind=AuditEvent.Kind.OAUTH_AUTHORIZED,
            actor=user,
            target=user,
            data={"client_id": request.client.client_id, "session_id": tokens.session_id, "step": "token"},
        )


def oauth_server() -> Server:
    """oauthlib's server with Keel's validator and django-oauth-toolkit's settings."""
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    server: Server = oauth2_settings.OAUTH2_SERVER_CLASS(validator, **oauth2_settings.server_kwargs)
    return server


# --- ID tokens --------------------------------------------------------------


def _var_key_path() -> Path:
    return Path(settings.VAR_DIR) / "oidc" / "rsa-private-key.pem"


def _generated_key_pem() -> str:
    """A key made once for this installation (``KEEL_VAR_DIR``), when none is configured."""
    path = _var_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            # O_EXCL: of two processes starting at once, one writes and both read its key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    return path.read_text()


@dataclass(frozen=True)
class _SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str
    public_jwk: dict[str, str]


@lru_cache(maxsize=4)
def _load_signing_key(pem: str) -> _SigningKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("OIDC_RSA_PRIVATE_KEY must be an RSA private key (PEM).")
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    # RFC 7638 thumbprint: the required members, sorted, no whitespace.
    canonical = json.dumps({"e": public["e"], "kty": "RSA", "n": public["n"]}, separators=(",", ":"))
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": public["n"], "e": public["e"]}
    return _SigningKey(private_key=key, kid=kid, public_jwk=jwk)


def oidc_signing_key() -> _SigningKey:
    return _load_signing_key(settings.OIDC_RSA_PRIVATE_KEY or _generated_key_pem())


def oidc_jwks() -> dict[str, Any]:
    """The public keys that verify Keel's ID tokens (``/.well-known/jwks.json``)."""
    return {"keys": [oidc_signing_key().public_jwk]}


def oidc_discovery() -> dict[str, Any]:
    """OpenID Provider metadata, so AppAuth can configure itself from the issuer."""
    base = settings.KEEL_PUBLIC_URL
    return {
        "issuer": settings.OIDC_ISSUER,
        "authorization_endpoint": f"{base}{AUTHORIZE_PATH}",
        "token_endpoint": f"{base}{TOKEN_PATH}",
        "jwks_uri": f"{base}{JWKS_PATH}",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": sorted(oauth2_settings.SCOPES),
        "authorization_response_iss_parameter_supported": True,
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "email",
            "email_verified",
        ],
    }


def oauth_id_token_issue(
    *,
    user: User,
    client_id: str,
    session_id: str,
    nonce: str | None = None,
    auth_time: datetime | None = None,
) -> str:
    """A signed OpenID Connect ID token for ``user``, addressed to ``client_id``."""
    key = oidc_signing_key()
    now = int(timezone.now().timestamp())
    claims: dict[str, Any] = {
        "iss": settings.OIDC_ISSUER,
        "sub": str(user.pk),
        "aud": client_id,
        "iat": now,
        "exp": now + settings.OIDC_ID_TOKEN_TTL_SECONDS,
        "sid": session_id,
        "email": user.email,
        "email_verified": bool(user.email_verified),
    }
    if auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
    if nonce:
        claims["nonce"] = nonce
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


def _token_body(
    *,
    tokens: IssuedTokens,
    user: User,
    client_id: str,
    nonce: str | None,
    auth_time: datetime | None,
    scope: str,
) -> dict[str, Any]:
    expires_in = int((tokens.access_expires_at - datetime.now(tz=UTC)).total_seconds())
    body: dict[str, Any] = {
        "access_token": tokens.access,
        "refresh_token": tokens.refresh,
        "token_type": "Bearer",
        "expires_in": max(0, expires_in),
        "id_token": oauth_id_token_issue(
            user=user, client_id=client_id, session_id=tokens.session_id, nonce=nonce, auth_time=auth_time
        ),
    }
    if scope:
        body["scope"] = scope
    return body


# --- The authorization request ----------------------------------------------


class OAuthFatalError(Exception):
    """A request that must not go back to the client: unknown client or redirect URI."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class OAuthRedirectError(Exception):
    """A bad request from a known client: the answer goes back to its redirect URI."""

    def __init__(self, location: str) -> None:
        super().__init__("redirect")
        self.location = location


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated ``GET auth/authorize``: what the hosted page needs, and the query to replay."""

    client_id: str
    client_name: str
    redirect_uri: str
    state: str | None
    scopes: list[str]
    params: dict[str, str]


def _authorize_uri(params: dict[str, str]) -> str:
    return f"{settings.KEEL_PUBLIC_URL}{AUTHORIZE_PATH}?{urlencode(params)}"


def _with_query(uri: str, **params: str) -> str:
    separator = "&" if urlsplit(uri).query else "?"
    return f"{uri}{separator}{urlencode(params)}"


def _error_location(redirect_uri: str, *, error: str, description: str, state: str | None) -> str:
    query = {"error": error, "error_description": description}
    if state:
        query["state"] = state
    return _with_query(redirect_uri, **query, iss=settings.OIDC_ISSUER)


def oauth_authorization_validate(*, params: dict[str, str]) -> AuthorizationRequest:
    """Check a ``GET auth/authorize`` query.

    Raises :class:`OAuthFatalError` (unknown client, unregistered redirect URI:
    the page shows the error) or :class:`OAuthRedirectError` (anything else:
    the error goes back to the app). PKCE with ``S256`` is required; ``plain``
    is refused.
    """
    server = oauth_server()
    try:
        scopes, credentials = server.validate_authorization_request(_authorize_uri(params), http_method="GET")
    except FatalClientError as exc:
        raise OAuthFatalError(exc.description or "The sign-in request is not valid.") from None
    except OAuth2Error as exc:
        if not exc.redirect_uri:
            raise OAuthFatalError(exc.description or "The sign-in request is not valid.") from None
        raise OAuthRedirectError(
            _with_query(exc.in_uri(exc.redirect_uri), iss=settings.OIDC_ISSUER)
        ) from None
    redirect_uri = str(credentials["redirect_uri"])
    state = credentials.get("state")
    challenge = params.get("code_challenge", "")
    if params.get("code_challenge_method") != "S256":
        raise OAuthRedirectError(
            _error_location(
                redirect_uri,
                error="invalid_request",
                description="code_challenge_method must be S256.",
                state=state,
            )
        )
    if len(challenge) != _S256_CHALLENGE_LENGTH or not set(challenge) <= _BASE64URL:
        raise OAuthRedirectError(
            _error_location(
                redirect_uri,
                error="invalid_request",
                description="code_challenge must be the base64url SHA-256 of the code_verifier.",
                state=state,
            )
        )
    client = credentials["request"].client
    return AuthorizationRequest(
        client_id=client.client_id,
        client_name=client.name or client.client_id,
        redirect_uri=redirect_uri,
        state=state,
        scopes=list(scopes or []),
        params=dict(params),
    )


def oauth_authorization_complete(
    *, request: AuthorizationRequest, user: User, tokens: IssuedTokens, ip: str | None
) -> str:
    """The user signed in on the hosted page: issue the code; returns where to send the browser."""
    server = oauth_server()
    try:
        headers, _body, _status = server.create_authorization_response(
            _authorize_uri(request.params),
            http_method="GET",
            scopes=request.scopes,
            credentials={"user": user, "keel_tokens": tokens},
        )
    except FatalClientError as exc:
        # The client was changed or removed while the user was signing in.
        from apps.accounts.services.sessions import session_revoke

        session_revoke(session_id=tokens.session_id, reason="oauth_client_invalid")
        raise OAuthFatalError(exc.description or "The app is no longer registered.") from None
    # RFC 9207: name the issuer in the response, so a client talking to several
    # authorization servers can tell which one answered (mix-up attacks).
    location = _with_query(str(headers["Location"]), iss=settings.OIDC_ISSUER)
    audit_record(
        kind=AuditEvent.Kind.OAUTH_AUTHORIZED,
        actor=user,
        target=user,
        ip=ip,
        data={"client_id": request.client_id, "session_id": tokens.session_id, "step": "authorize"},
    )
    return location


def oauth_authorization_deny(*, request: AuthorizationRequest) -> str:
    """The user cancelled on the hosted page: ``access_denied`` back to the app."""
    return _error_location(
        request.redirect_uri,
        error="access_denied",
        description="The user cancelled the sign-in.",
        state=request.state,
    )


# --- The password step of the hosted page ------------------------------------


def oauth_password_sign_in(
    *, email: str, password: str, device: dict[str, Any], ip: str | None, user_agent: str | None
) -> IssuedTokens:
    """The hosted page's email and password, with the same throttles and lockout as ``auth/login``.

    Then :func:`login_after_first_factor` with ``via="oauth"``: raises
    ``MfaRequired`` / ``DeviceVerificationRequired`` like the API does.
    """
    user = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
    if user is None:
        # No such account: the API's sign-in answers that case (same timing,
        # lockout and counters for unknown addresses, so nothing is revealed).
        return login_with_password(
            email=email, password=password, device=device, otp=None, ip=ip, user_agent=user_agent
        )
    throttle_hit(scope="auth_login", ident=login_ident(email))
    if lockout_is_locked(user=user):
        _password_failure(reason="locked", user=user, ip=ip)
        raise AccountLocked()
    if not user.check_password(password):
        locked = lockout_register_failure(user=user, ip=ip)
        _password_failure(reason="invalid_password", user=user, ip=ip)
        if locked:
            raise AccountLocked()
        raise InvalidCredentials()
    lockout_clear(user=user)
    return login_after_first_factor(
        user=user, device=device, ip=ip, user_agent=user_agent, mfa_passed=False, via="oauth"
    )


def _password_failure(*, reason: str, user: User, ip: str | None) -> None:
    AUTH_LOGIN_FAILURES.labels(reason=reason).inc()
    audit_record(
        kind=AuditEvent.Kind.LOGIN_FAILED, target=user, ip=ip, data={"reason": reason, "via": "oauth"}
    )
    logger.info("login_failed", reason=reason, user_id=str(user.pk), via="oauth")


# --- The token endpoint -----------------------------------------------------


@dataclass(frozen=True)
class OAuthTokenResponse:
    """An RFC 6749 answer: the token body or ``{"error", "error_description"}``."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> OAuthTokenResponse:
    return OAuthTokenResponse(
        status=status,
        body={"error": error, "error_description": description},
        headers={**_NO_STORE, **(headers or {})},
    )


def _oauthlib_headers(*, authorization: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if authorization:
        # django-oauth-toolkit reads client credentials from the WSGI-style name.
        headers["Authorization"] = authorization
        headers["HTTP_AUTHORIZATION"] = authorization
    return headers


def _refresh_grant(*, body: dict[str, str], authorization: str | None, ip: str | None) -> OAuthTokenResponse:
    """``grant_type=refresh_token``: the same rotation as ``auth/token/refresh``."""
    from apps.accounts.services.sessions import tokens_refresh

    uri = f"{settings.KEEL_PUBLIC_URL}{TOKEN_PATH}"
    request = OAuthlibRequest(uri, "POST", urlencode(body), _oauthlib_headers(authorization=authorization))
    validator = KeelOAuth2Validator()
    if not request.client_id and not authorization:
        return _oauth_error(400, "invalid_request", "client_id is required.")
    if validator.client_authentication_required(request):
        authenticated = validator.authenticate_client(request)
    else:
        authenticated = validator.authenticate_client_id(request.client_id, request)
    if not authenticated or request.client is None:
        return _oauth_error(401, "invalid_client", "Client authentication failed.")
    refresh = body.get("refresh_token")
    if not refresh:
        return _oauth_error(400, "invalid_request", "refresh_token is required.")
    try:
        tokens = tokens_refresh(refresh=refresh, ip=ip)
    except KeelError as exc:
        if exc.code == "token_reused":
            return _oauth_error(
                400, "invalid_grant", "The refresh token was already used; the session is signed out."
            )
        return _oauth_error(400, "invalid_grant", "The refresh token is invalid or expired.")
    user = tokens.user or User.objects.get(pk=_session_user_id(tokens))
    return OAuthTokenResponse(
        status=200,
        body=_token_body(
            tokens=tokens,
            user=user,
            client_id=request.client.client_id,
            nonce=None,
            auth_time=None,
            scope="",
        ),
        headers=dict(_NO_STORE),
    )


def _session_user_id(tokens: IssuedTokens) -> str:
    from apps.accounts.selectors import access_token_identify

    identity = access_token_identify(token=tokens.access)
    if identity is None:
        raise oauth_errors.InvalidGrantError()
    return identity.user_id


def oauth_token_response(
    *, body: dict[str, str], authorization: str | None, ip: str | None
) -> OAuthTokenResponse:
    """``POST auth/token``: the code (with its ``code_verifier``) or a refresh token for Keel tokens."""
    grant_type = body.get("grant_type")
    if grant_type == "refresh_token":
        return _refresh_grant(body=body, authorization=authorization, ip=ip)
    if grant_type != "authorization_code":
        return _oauth_error(400, "unsupported_grant_type", "Use authorization_code or refresh_token.")
    if not body.get("code_verifier"):
        return _oauth_error(400, "invalid_request", "code_verifier is required (PKCE).")
    server = oauth_server()
    uri = f"{settings.KEEL_PUBLIC_URL}{TOKEN_PATH}"
    try:
        headers, payload, status = server.create_token_response(
            uri, "POST", urlencode(body), _oauthlib_headers(authorization=authorization)
        )
    except OAuth2Error as exc:
        headers, payload, status = dict(exc.headers or {}), exc.json, exc.status_code
    parsed = json.loads(payload) if payload else {}
    if status != 200:
        AUTH_LOGIN_FAILURES.labels(reason=f"oauth_{parsed.get('error', 'error')}").inc()
        logger.info("oauth_token_refused", error=parsed.get("error"), client_id=body.get("client_id"))
    return OAuthTokenResponse(status=status, body=parsed, headers={**_NO_STORE, **dict(headers or {})})


# --- Housekeeping -----------------------------------------------------------


def oauth_authorizations_expire() -> int:
    """Revoke the sessions of codes that expired unused, and forget old codes.

    Safe to run twice; returns how many sessions were revoked.
    """
    now = timezone.now()
    revoked = 0
    stale = OAuthAuthorization.objects.filter(
        expires_at__lt=now, exchanged_at__isnull=True, revoked_at__isnull=True
    ).only("pk", "session_id")
    for authorization in stale.iterator():
        _authorization_revoke(authorization, reason="oauth_code_expired")
        revoked += 1
    OAuthAuthorization.objects.filter(created_at__lt=now - _AUTHORIZATION_RETENTION).delete()
    Grant.objects.filter(expires__lt=now).delete()
    return revoked
