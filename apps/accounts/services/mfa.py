"""Multi-factor authentication: TOTP (RFC 6238) and single-use recovery codes.

Setup is two steps: ``POST auth/mfa/totp`` creates an unconfirmed secret and
``POST auth/mfa/totp/confirm`` with a first code switches MFA on and hands
out ten recovery codes (shown once, stored as keyed hashes). A TOTP code is
accepted at most once (the last accepted time step is stored), within one
step of clock drift either way.

Sign-in with MFA: the first factor answers ``403 mfa_required`` with an
``mfa_token`` (signed, short-lived, single use, attempts limited) that
``POST auth/login/mfa`` exchanges, with a code, for a session.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import pyotp
import structlog
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import AuditEvent, RecoveryCode, TotpDevice, User
from apps.accounts.services.audit import audit_record
from apps.accounts.services.emails import account_email_send
from apps.accounts.services.sessions import IssuedTokens, secret_hash
from apps.core.exceptions import Conflict, InvalidToken, KeelError
from apps.core.metrics import AUTH_LOGIN_FAILURES
from apps.core.throttling import throttle_hit

logger = structlog.get_logger(__name__)

RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_TOTP_CODE = re.compile(r"^\d{6}$")
_MFA_TOKEN_SALT = "keel.accounts.mfa_login"


class InvalidCode(KeelError):
    status_code = 401
    code = "invalid_code"
    title = "Invalid code"
    default_detail = "The code is wrong, expired or already used."


class InvalidCodeForAccount(InvalidCode):
    """A wrong code on an endpoint of a signed-in user: 400, so the app keeps its session."""

    status_code = 400


class MfaAlreadyEnabled(Conflict):
    code = "mfa_already_enabled"
    title = "MFA already enabled"
    default_detail = (
        "Two-factor authentication is already on. Turn it off first to set up a new authenticator."
    )


class MfaNotPending(Conflict):
    code = "mfa_not_pending"
    title = "No MFA setup in progress"
    default_detail = "Start the setup with POST auth/mfa/totp first."


class MfaNotEnabled(Conflict):
    code = "mfa_not_enabled"
    title = "MFA not enabled"
    default_detail = "Two-factor authentication is not on."


@dataclass(frozen=True)
class TotpSetup:
    secret: str
    otpauth_url: str


def mfa_is_enabled(*, user: User) -> bool:
    return TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()


def _normalise_recovery_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


def _recovery_hash(*, user: User, code: str) -> str:
    return secret_hash(value=f"{user.pk}:{_normalise_recovery_code(code)}", purpose="recovery-code")


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def totp_setup_begin(*, user: User) -> TotpSetup:
    """A new (unconfirmed) TOTP secret for ``user``; replaces an unfinished setup."""
    with transaction.atomic():
        existing = TotpDevice.objects.select_for_update().filter(user=user).first()
        if existing is not None and existing.confirmed_at is not None:
            raise MfaAlreadyEnabled()
        secret = pyotp.random_base32()
        TotpDevice.objects.update_or_create(
            user=user,
            defaults={
                "secret": secret,
                "confirmed_at": None,
                "last_used_step": None,
                "created_at": timezone.now(),
            },
        )
    url = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=settings.ACCOUNT_TOTP_ISSUER)
    return TotpSetup(secret=secret, otpauth_url=url)


def _totp_accept(*, device: TotpDevice, code: str) -> bool:
    """Check ``code`` against ``device`` (row locked by the caller) and burn its time step."""
    code = code.strip().replace(" ", "")
    if not _TOTP_CODE.match(code):
        return False
    totp = pyotp.TOTP(device.secret)
    current = totp.timecode(timezone.now())
    for step in (current - 1, current, current + 1):
        if device.last_used_step is not None and step <= device.last_used_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            device.last_used_step = step
            device.save(update_fields=["last_used_step"])
            return True
    return False


def totp_setup_confirm(*, user: User, code: str, ip: str | None = None) -> list[str]:
    """Switch MFA on with a first code from the authenticator; returns the recovery codes."""
    throttle_hit(scope="auth_mfa", ident=f"user:{user.pk}")
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user).first()
        if device is None:
            raise MfaNotPending()
        if device.confirmed_at is not None:
            raise MfaAlreadyEnabled()
        accepted = _totp_accept(device=device, code=code)
        if accepted:
            device.confirmed_at = timezone.now()
            device.save(update_fields=["confirmed_at"])
            codes = _recovery_codes_replace(user=user)
            audit_record(kind=AuditEvent.Kind.MFA_ENABLED, actor=user, target=user, ip=ip)
            account_email_send(user=user, template="mfa_enabled", context={})
            return codes
    raise InvalidCodeForAccount()


def _recovery_codes_replace(*, user: User) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    RecoveryCode.objects.bulk_create(
        [RecoveryCode(user=user, code_hash=_recovery_hash(user=user, code=code)) for code in codes]
    )
    return codes


def mfa_code_verify(*, user: User, code: str, ip: str | None = None) -> bool:
    """Accept a TOTP code or an unused recovery code of ``user`` (each only once)."""
    if not isinstance(code, str) or not code.strip():
        return False
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=False).first()
        if device is None:
            return False
        if _totp_accept(device=device, code=code):
            return True
        used = RecoveryCode.objects.filter(
            user=user, code_hash=_recovery_hash(user=user, code=code), used_at__isnull=True
        ).update(used_at=timezone.now())
        if used:
            remaining = RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
            audit_record(
                kind=AuditEvent.Kind.RECOVERY_CODE_USED,
                actor=user,
                target=user,
                ip=ip,
                data={"remaining": remaining},
            )
            account_email_send(user=user, template="recovery_code_used", context={"remaining": remaining})
            return True
    return False


def totp_disable(*, user: User, code: str | None, password: str | None, ip: str | None = None) -> None:
    """Switch MFA off, proven with a current code (or recovery code) or the password."""
    throttle_hit(scope="auth_mfa", ident=f"user:{user.pk}")
    if not TotpDevice.objects.filter(user=user).exists():
        raise MfaNotEnabled()
    proven = False
    if code:
        proven = mfa_code_verify(user=user, code=code, ip=ip)
    elif password:
        proven = user.check_password(password)
    if not proven:
        audit_record(
            kind=AuditEvent.Kind.MFA_FAILED, actor=user, target=user, ip=ip, data={"step": "disable"}
        )
        raise InvalidCodeForAccount("The code or password is wrong.")
    with transaction.atomic():
        TotpDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        audit_record(kind=AuditEvent.Kind.MFA_DISABLED, actor=user, target=user, ip=ip)
        account_email_send(user=user, template="mfa_disabled", context={})


# --- Sign-in with MFA -------------------------------------------------------


def mfa_token_issue(*, user: User, device: dict[str, Any], via: str) -> str:
    """The signed ``mfa_token`` of a sign-in that passed its first factor."""
    payload = {
        "u": str(user.pk),
        "d": {k: device.get(k) for k in ("device_id", "name", "platform")},
        "v": via,
        "n": secrets.token_urlsafe(16),
    }
    return signing.dumps(payload, salt=_MFA_TOKEN_SALT, compress=True)


def _mfa_token_open(mfa_token: str) -> dict[str, Any]:
    try:
        payload = signing.loads(
            mfa_token, salt=_MFA_TOKEN_SALT, max_age=settings.ACCOUNT_MFA_TOKEN_TTL_SECONDS
        )
    except signing.BadSignature:
        raise InvalidToken("The mfa_token is invalid or expired; sign in again.") from None
    if not isinstance(payload, dict) or not {"u", "d", "v", "n"} <= payload.keys():
        raise InvalidToken("The mfa_token is invalid or expired; sign in again.")
    return payload


def mfa_login_complete(*, mfa_token: str, code: str, ip: str | None, user_agent: str | None) -> IssuedTokens:
    """Second step of a sign-in with MFA: exchange ``mfa_token`` and a code for a session."""
    from apps.accounts.services.login import login_after_first_factor

    payload = _mfa_token_open(mfa_token)
    nonce = payload["n"]
    used_key = f"accounts:mfa_token_used:{nonce}"
    attempts_key = f"accounts:mfa_token_attempts:{nonce}"
    ttl = settings.ACCOUNT_MFA_TOKEN_TTL_SECONDS + 60
    if cache.get(used_key):
        raise InvalidToken("The mfa_token was already used; sign in again.")
    throttle_hit(scope="auth_mfa", ident=f"user:{payload['u']}")
    cache.add(attempts_key, 0, timeout=ttl)
    if cache.get(attempts_key, 0) >= settings.ACCOUNT_MFA_MAX_ATTEMPTS:
        raise InvalidToken("Too many wrong codes for this sign-in; sign in again.")
    user = User.objects.filter(pk=payload["u"], is_active=True).first()
    if user is None:
        raise InvalidToken("The mfa_token is invalid or expired; sign in again.")
    if not mfa_code_verify(user=user, code=code, ip=ip):
        try:
            cache.incr(attempts_key)
        except ValueError:
            cache.set(attempts_key, 1, timeout=ttl)
        AUTH_LOGIN_FAILURES.labels(reason="mfa").inc()
        audit_record(kind=AuditEvent.Kind.MFA_FAILED, actor=None, target=user, ip=ip, data={"step": "login"})
        raise InvalidCode()
    if not cache.add(used_key, 1, timeout=ttl):
        raise InvalidToken("The mfa_token was already used; sign in again.")
    via = payload["v"] if payload["v"] != "password" else "mfa"
    return login_after_first_factor(
        user=user, device=payload["d"], ip=ip, user_agent=user_agent, mfa_passed=True, via=via
    )
