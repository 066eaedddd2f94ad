"""Sign in with Google and Apple: the platform SDK's ID token, verified here.

The app signs the user in with the platform SDK and posts the ID token it got.
Keel verifies the signature against the provider's published keys (JWKS,
RS256 or ES256 only, never ``none`` or HMAC), the issuer, the audience (one of
the configured client ids), the expiry, and the nonce when the app sends one:

- Google puts the nonce the app passed to the SDK into the token as it is,
  so the token's ``nonce`` must equal the one posted here.
- Apple puts the SHA-256 (lowercase hex) of the nonce into the token: the app
  passes ``sha256(raw)`` to ``ASAuthorizationAppleIDRequest.nonce`` and posts
  the *raw* nonce here; Keel hashes it and compares. A hashed value posted
  here is refused, since anyone who saw the token could post that.

Accounts: the identity (provider, subject) is the key. A first sign-in needs a
provider-verified email: it links to the account with that email, or creates
one. An account whose email was never verified is only linked after its
password is disabled and its sessions are revoked, so whoever registered an
address they do not own loses the account to its owner. The sign-in then goes
through :func:`apps.accounts.services.login.login_after_first_factor`: MFA
still applies (``403 mfa_required``, as for a password sign-in), step-up does
not (the provider has just verified the person on this device).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import AuditEvent, SocialIdentity, User
from apps.accounts.services.audit import audit_record
from apps.accounts.services.login import login_after_first_factor
from apps.accounts.services.sessions import IssuedTokens
from apps.core.exceptions import InvalidToken, KeelError, NotFound
from apps.core.metrics import AUTH_LOGIN_FAILURES

logger = structlog.get_logger(__name__)

_ALLOWED_ALGORITHMS = ("RS256", "ES256")
_JWKS_MAX_BYTES = 256 * 1024
# Keys survive this long in the cache, so that they can stand in while the
# provider is unreachable; ``fresh_until`` inside decides when to refetch.
_JWKS_STALE_SECONDS = 7 * 24 * 3600


class SocialProviderUnavailable(KeelError):
    status_code = 503
    code = "provider_unavailable"
    title = "Sign-in provider unavailable"
    default_detail = "The sign-in provider could not be reached to check the token; try again shortly."


@dataclass(frozen=True)
class SocialProvider:
    name: str
    issuers: tuple[str, ...]
    client_ids_setting: str
    jwks_url_setting: str
    # Apple stores sha256(nonce) in the token, Google the nonce itself.
    nonce_is_hashed: bool

    @property
    def client_ids(self) -> list[str]:
        return [cid for cid in getattr(settings, self.client_ids_setting) if cid]

    @property
    def jwks_url(self) -> str:
        url: str = getattr(settings, self.jwks_url_setting)
        return url


PROVIDERS: dict[str, SocialProvider] = {
    "google": SocialProvider(
        name="google",
        issuers=("https://accounts.google.com", "accounts.google.com"),
        client_ids_setting="SOCIAL_GOOGLE_CLIENT_IDS",
        jwks_url_setting="SOCIAL_GOOGLE_JWKS_URL",
        nonce_is_hashed=False,
    ),
    "apple": SocialProvider(
        name="apple",
        issuers=("https://appleid.apple.com",),
        client_ids_setting="SOCIAL_APPLE_CLIENT_IDS",
        jwks_url_setting="SOCIAL_APPLE_JWKS_URL",
        nonce_is_hashed=True,
    ),
}


@dataclass(frozen=True)
class SocialClaims:
    """What a verified ID token says about the person."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str


@dataclass(frozen=True)
class SocialLoginResult:
    tokens: IssuedTokens
    user: User
    created: bool


class _TokenRejected(Exception):
    """Internal: why a token was refused (logged and counted, never shown in detail)."""


def social_provider_get(*, provider: str) -> SocialProvider:
    """The provider called ``provider``; ``404`` for any other name."""
    found = PROVIDERS.get(provider)
    if found is None:
        raise NotFound("Unknown sign-in provider.")
    return found


# --- Provider keys (JWKS) ---------------------------------------------------


def _jwks_cache_key(url: str) -> str:
    return "accounts:social:jwks:" + hashlib.sha256(url.encode()).hexdigest()[:32]


def _max_age(cache_control: str | None) -> int | None:
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return int(value.strip())
    return None


def _jwks_url_is_safe(url: str) -> bool:
    """Keys come over HTTPS; plain HTTP only from this machine (a local fake in tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def _jwks_fetch(url: str) -> dict[str, Any]:
    """GET the provider's JWKS document; raises ``SocialProviderUnavailable``."""
    if not _jwks_url_is_safe(url):
        # Keys over plain HTTP would let anyone on the path sign tokens for any account.
        logger.error("social_jwks_url_not_https", url=url)
        raise SocialProviderUnavailable()
    try:
        with httpx.Client(timeout=settings.SOCIAL_JWKS_TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        logger.warning("social_jwks_fetch_failed", url=url, error=type(exc).__name__)
        raise SocialProviderUnavailable() from None
    if response.status_code != 200 or len(response.content) > _JWKS_MAX_BYTES:
        logger.warning("social_jwks_fetch_failed", url=url, status=response.status_code)
        raise SocialProviderUnavailable()
    try:
        document = response.json()
    except ValueError:
        document = None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        logger.warning("social_jwks_malformed", url=url)
        raise SocialProviderUnavailable()
    ttl = settings.SOCIAL_JWKS_CACHE_SECONDS
    provider_max_age = _max_age(response.headers.get("Cache-Control"))
    if provider_max_age is not None:
        ttl = max(60, min(ttl, provider_max_age))
    entry = {"keys": [k for k in keys if isinstance(k, dict)], "fresh_until": time.time() + ttl}
    cache.set(_jwks_cache_key(url), entry, timeout=_JWKS_STALE_SECONDS)
    logger.info("social_jwks_fetched", url=url, keys=len(entry["keys"]), ttl=ttl)
    return entry


def _jwks_keys(url: str) -> list[dict[str, Any]]:
    """The cached keys, refetched when no longer fresh (stale ones stand in on failure)."""
    entry = cache.get(_jwks_cache_key(url))
    if entry is not None and entry["fresh_until"] > time.time():
        return list(entry["keys"])
    try:
        return list(_jwks_fetch(url)["keys"])
    except SocialProviderUnavailable:
        if entry is not None:
            logger.warning("social_jwks_using_stale_keys", url=url)
            return list(entry["keys"])
        raise


def _jwks_refetch_allowed(url: str) -> bool:
    """At most one refetch per interval for an unknown key id, shared by all processes."""
    return bool(
        cache.add(_jwks_cache_key(url) + ":refetch", 1, timeout=settings.SOCIAL_JWKS_REFETCH_INTERVAL_SECONDS)
    )


def _signing_key(provider: SocialProvider, *, kid: str, alg: str) -> jwt.PyJWK:
    keys = _jwks_keys(provider.jwks_url)
    match = next((k for k in keys if k.get("kid") == kid), None)
    if match is None and _jwks_refetch_allowed(provider.jwks_url):
        # The provider rotated its keys since we cached them.
        keys = _jwks_fetch(provider.jwks_url)["keys"]
        match = next((k for k in keys if k.get("kid") == kid), None)
    if match is None:
        raise _TokenRejected("unknown_kid")
    if match.get("alg") not in (None, alg) or match.get("use") not in (None, "sig"):
        raise _TokenRejected("key_mismatch")
    try:
        return jwt.PyJWK(match, algorithm=alg)
    except (jwt.PyJWKError, jwt.InvalidKeyError):
        raise _TokenRejected("key_mismatch") from None


# --- Verification -----------------------------------------------------------


def _email_verified(value: Any) -> bool:
    # Google sends a boolean, Apple a boolean or the string "true".
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _verify(provider: SocialProvider, *, id_token: str, nonce: str | None) -> SocialClaims:
    client_ids = provider.client_ids
    if not client_ids:
        raise _TokenRejected("provider_not_configured")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise _TokenRejected("malformed") from None
    alg = header.get("alg")
    kid = header.get("kid")
    if alg not in _ALLOWED_ALGORITHMS:
        raise _TokenRejected("algorithm")
    if not isinstance(kid, str) or not kid:
        raise _TokenRejected("no_kid")
    key = _signing_key(provider, kid=kid, alg=alg)
    try:
        claims = jwt.decode(
            id_token,
            key,
            algorithms=[alg],
            audience=client_ids,
            issuer=provider.issuers,
            leeway=settings.SOCIAL_CLOCK_SKEW_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise _TokenRejected("expired") from None
    except jwt.InvalidAudienceError:
        raise _TokenRejected("audience") from None
    except jwt.InvalidIssuerError:
        raise _TokenRejected("issuer") from None
    except jwt.InvalidSignatureError:
        raise _TokenRejected("signature") from None
    except jwt.PyJWTError:
        raise _TokenRejected("invalid") from None
    if nonce is not None:
        expected = hashlib.sha256(nonce.encode()).hexdigest() if provider.nonce_is_hashed else nonce
        claimed = claims.get("nonce")
        if not isinstance(claimed, str) or not hmac.compare_digest(claimed.encode(), expected.encode()):
            raise _TokenRejected("nonce")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise _TokenRejected("subject")
    email = claims.get("email")
    email = email.strip().lower() if isinstance(email, str) and "@" in email else None
    name = claims.get("name") if isinstance(claims.get("name"), str) else ""
    return SocialClaims(
        provider=provider.name,
        subject=subject,
        email=email,
        email_verified=bool(email) and _email_verified(claims.get("email_verified")),
        name=str(name).strip()[:150],
    )


def _reject(*, provider: str, reason: str, ip: str | None) -> InvalidToken:
    AUTH_LOGIN_FAILURES.labels(reason=f"social_{reason}").inc()
    audit_record(
        kind=AuditEvent.Kind.LOGIN_FAILED,
        ip=ip,
        data={"reason": f"social_{reason}", "provider": provider},
    )
    logger.info("social_login_rejected", provider=provider, reason=reason)
    return InvalidToken("The ID token is invalid, expired or not meant for this app.")


def social_id_token_verify(
    *, provider: str, id_token: str, nonce: str | None = None, ip: str | None = None
) -> SocialClaims:
    """Verify a provider's ID token; ``401 invalid_token`` for any failure of the token itself.

    ``503 provider_unavailable`` when the provider's keys cannot be fetched
    and none are cached.
    """
    config = social_provider_get(provider=provider)
    try:
        return _verify(config, id_token=id_token, nonce=nonce)
    except _TokenRejected as exc:
        raise _reject(provider=provider, reason=str(exc), ip=ip) from None


# --- Accounts ---------------------------------------------------------------


def _account_for(*, claims: SocialClaims, ip: str | None) -> tuple[User, bool]:
    """The user behind ``claims`` (linked or created); ``(user, created)``.

    Locks the identity row, or the user row found by email, so two first
    sign-ins at once end on one account.
    """
    from apps.accounts.services.sessions import session_revoke_all_for_user

    now = timezone.now()
    identity = (
        SocialIdentity.objects.select_for_update()
        .select_related("user")
        .filter(provider=claims.provider, subject=claims.subject)
        .first()
    )
    if identity is not None:
        if not identity.user.is_active:
            raise _TokenRejected("inactive_account")
        identity.last_login_at = now
        identity.save(update_fields=["last_login_at"])
        return identity.user, False
    if not claims.email or not claims.email_verified:
        raise _TokenRejected("email_not_verified")
    user = User.objects.select_for_update().filter(email__iexact=claims.email).first()
    created = False
    if user is not None:
        if not user.is_active:
            raise _TokenRejected("inactive_account")
        if not user.email_verified:
            # Whoever registered this address never proved they own it; the
            # provider just did. Their password and sessions go.
            user.email_verified = True
            user.set_unusable_password()
            user.save(update_fields=["email_verified", "password"])
            session_revoke_all_for_user(user=user, reason="social_takeover_of_unverified_email")
            audit_record(
                kind=AuditEvent.Kind.EMAIL_VERIFIED,
                target=user,
                ip=ip,
                data={"via": f"social_{claims.provider}", "password_disabled": True},
            )
    else:
        user = User.objects.create_user(
            email=claims.email, password=None, email_verified=True, display_name=claims.name
        )
        created = True
        audit_record(
            kind=AuditEvent.Kind.REGISTER,
            actor=user,
            target=user,
            ip=ip,
            data={"via": f"social_{claims.provider}"},
        )
    SocialIdentity.objects.create(
        user=user, provider=claims.provider, subject=claims.subject, created_at=now, last_login_at=now
    )
    audit_record(
        kind=AuditEvent.Kind.SOCIAL_LOGIN,
        actor=user,
        target=user,
        ip=ip,
        data={"provider": claims.provider, "linked": True, "created": created},
    )
    return user, created


def social_account_resolve(*, claims: SocialClaims, ip: str | None) -> tuple[User, bool]:
    """Find, link or create the account of a verified identity; ``(user, created)``."""
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _account_for(claims=claims, ip=ip)
        except _TokenRejected as exc:
            raise _reject(provider=claims.provider, reason=str(exc), ip=ip) from None
        except IntegrityError:
            # A concurrent first sign-in created the identity or the account; take theirs.
            if attempt:
                raise
    raise AssertionError("unreachable")


def social_login(
    *,
    provider: str,
    id_token: str,
    nonce: str | None,
    device: dict[str, Any],
    ip: str | None,
    user_agent: str | None,
) -> SocialLoginResult:
    """``POST auth/social/{provider}``: verify the token, find the account, open a session."""
    claims = social_id_token_verify(provider=provider, id_token=id_token, nonce=nonce, ip=ip)
    user, created = social_account_resolve(claims=claims, ip=ip)
    tokens = login_after_first_factor(
        user=user,
        device=device,
        ip=ip,
        user_agent=user_agent,
        mfa_passed=False,
        via=f"social_{provider}",
    )
    logger.info("social_login", provider=provider, user_id=str(user.pk), created=created)
    return SocialLoginResult(tokens=tokens, user=user, created=created)
