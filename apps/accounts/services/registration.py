"""Registration and email verification."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import AuditEvent, OneTimeToken, User
from apps.accounts.services.audit import audit_record
from apps.accounts.services.emails import account_email_send, email_locale_for
from apps.accounts.services.sessions import IssuedTokens, secret_hash, session_start
from apps.core.exceptions import Conflict, KeelError, ValidationFailed

logger = structlog.get_logger(__name__)


class EmailTaken(Conflict):
    code = "email_taken"
    title = "Email taken"
    default_detail = "An account with this email address already exists."


class InvalidOneTimeToken(KeelError):
    status_code = 400
    code = "invalid_token"
    title = "Invalid token"
    default_detail = "The link is invalid, expired or was already used."


def email_normalize(email: str) -> str:
    return email.strip().lower()


def password_check_strength(*, password: str, user: User) -> None:
    """Django's validators (length, common passwords, similarity, numeric) as ``400 validation_error``."""
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise ValidationFailed(errors={"password": list(exc.messages)}) from None


# --- One-time email tokens ---------------------------------------------------


def one_time_token_issue(*, user: User, purpose: str, lifetime: timedelta) -> str:
    """A new single-use token for ``purpose``; older unused ones of the same purpose die."""
    now = timezone.now()
    OneTimeToken.objects.filter(user=user, purpose=purpose, used_at__isnull=True).update(used_at=now)
    raw = secrets.token_urlsafe(32)
    OneTimeToken.objects.create(
        user=user,
        purpose=purpose,
        token_hash=secret_hash(value=raw, purpose=f"one-time:{purpose}"),
        email=user.email,
        created_at=now,
        expires_at=now + lifetime,
    )
    return raw


def one_time_token_consume(*, token: str, purpose: str) -> User:
    """Use up a token: the user it was issued to, or ``400 invalid_token``.

    Locks the token row so two concurrent uses cannot both succeed. A token
    sent to an address the account no longer has is invalid.
    """
    if not isinstance(token, str) or not token or len(token) > 256:
        raise InvalidOneTimeToken()
    now = timezone.now()
    row = (
        OneTimeToken.objects.select_for_update()
        .select_related("user")
        .filter(token_hash=secret_hash(value=token, purpose=f"one-time:{purpose}"), purpose=purpose)
        .first()
    )
    if (
        row is None
        or row.used_at is not None
        or row.expires_at <= now
        or not row.user.is_active
        or row.email.lower() != row.user.email.lower()
    ):
        raise InvalidOneTimeToken()
    row.used_at = now
    row.save(update_fields=["used_at"])
    return row.user


# --- Registration -----------------------------------------------------------


def email_verification_send(*, user: User) -> None:
    """Email ``user`` a fresh verification link (the previous one stops working)."""
    lifetime = timedelta(hours=settings.ACCOUNT_EMAIL_VERIFY_TTL_HOURS)
    token = one_time_token_issue(user=user, purpose=OneTimeToken.Purpose.VERIFY_EMAIL, lifetime=lifetime)
    account_email_send(
        user=user,
        template="verify_email",
        context={
            "url": settings.ACCOUNT_EMAIL_VERIFY_URL.replace("{token}", token),
            "expires_hours": settings.ACCOUNT_EMAIL_VERIFY_TTL_HOURS,
        },
    )


def user_register(
    *,
    email: str,
    password: str,
    display_name: str,
    device: dict[str, Any],
    ip: str | None,
    user_agent: str | None,
    locale: str | None = None,
) -> IssuedTokens:
    """``POST auth/register``: a new unverified account, signed in on the registering device.

    The registering device is trusted (it created the account). The
    verification email goes out when the transaction commits.
    """
    email = email_normalize(email)
    candidate = User(email=email, display_name=display_name)
    password_check_strength(password=password, user=candidate)
    if User.objects.filter(email__iexact=email).exists():
        raise EmailTaken()
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email=email,
                password=password,
                display_name=display_name,
                locale=email_locale_for(locale=locale),
                email_verified=False,
            )
            audit_record(kind=AuditEvent.Kind.REGISTER, actor=user, target=user, ip=ip)
            email_verification_send(user=user)
            tokens = session_start(
                user=user, device=device, ip=ip, user_agent=user_agent, trust_device=True, via="password"
            )
    except IntegrityError:
        # A concurrent registration of the same address won the unique index.
        raise EmailTaken() from None
    logger.info("user_registered", user_id=str(user.pk))
    return tokens


@transaction.atomic
def email_verify(*, token: str, ip: str | None = None) -> User:
    """``POST auth/email/verify``: mark the address verified (``400 invalid_token`` otherwise)."""
    user = one_time_token_consume(token=token, purpose=OneTimeToken.Purpose.VERIFY_EMAIL)
    if not user.email_verified:
        user.email_verified = True
        user.save(update_fields=["email_verified", "updated_at"])
    audit_record(kind=AuditEvent.Kind.EMAIL_VERIFIED, actor=user, target=user, ip=ip)
    return user


def email_verification_resend(*, user: User) -> None:
    """Send the verification link again (no-op once the address is verified)."""
    if user.email_verified:
        return
    with transaction.atomic():
        email_verification_send(user=user)
