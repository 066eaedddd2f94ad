"""Password reset (by email) and change (signed in).

A reset answers the same whether or not the address has an account. The
reset token is single use and expires; using it sets the new password,
signs out every session, unlocks the account and, as the link proved
access to the mailbox, marks the address verified.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from django.conf import settings
from django.db import transaction

from apps.accounts.models import AuditEvent, OneTimeToken, User
from apps.accounts.services.audit import audit_record
from apps.accounts.services.emails import account_email_send
from apps.accounts.services.login import lockout_clear, login_ident
from apps.accounts.services.registration import (
    one_time_token_consume,
    one_time_token_issue,
    password_check_strength,
)
from apps.accounts.services.sessions import session_revoke_all_for_user
from apps.core.exceptions import ValidationFailed
from apps.core.throttling import throttle_hit

logger = structlog.get_logger(__name__)


def password_reset_request(*, email: str, ip: str | None) -> None:
    """``POST auth/password/reset``: email a reset link if the address has an active account.

    Throttled per address (whether or not it exists) on top of the per-IP
    throttle of the view; says nothing about whether the account exists.
    """
    throttle_hit(scope="auth_password_reset", ident=login_ident(email))
    user = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
    if user is None:
        logger.info("password_reset_requested", known=False)
        return
    lifetime = timedelta(minutes=settings.ACCOUNT_PASSWORD_RESET_TTL_MINUTES)
    with transaction.atomic():
        token = one_time_token_issue(
            user=user, purpose=OneTimeToken.Purpose.RESET_PASSWORD, lifetime=lifetime
        )
        audit_record(kind=AuditEvent.Kind.PASSWORD_RESET_REQUESTED, actor=None, target=user, ip=ip)
        account_email_send(
            user=user,
            template="password_reset",
            context={
                "url": settings.ACCOUNT_PASSWORD_RESET_URL.replace("{token}", token),
                "expires_minutes": settings.ACCOUNT_PASSWORD_RESET_TTL_MINUTES,
            },
        )
    logger.info("password_reset_requested", known=True, user_id=str(user.pk))


def password_reset_confirm(*, token: str, password: str, ip: str | None) -> None:
    """``POST auth/password/reset/confirm``: set the new password and sign out everywhere."""
    with transaction.atomic():
        user = one_time_token_consume(token=token, purpose=OneTimeToken.Purpose.RESET_PASSWORD)
        password_check_strength(password=password, user=user)
        user.set_password(password)
        user.email_verified = True
        user.save(update_fields=["password", "email_verified", "updated_at"])
        lockout_clear(user=user)
        revoked = session_revoke_all_for_user(user=user, reason="password_reset")
        audit_record(
            kind=AuditEvent.Kind.PASSWORD_RESET,
            actor=user,
            target=user,
            ip=ip,
            data={"sessions_revoked": revoked},
        )
        account_email_send(user=user, template="password_changed", context={})
    logger.info("password_reset", user_id=str(user.pk), sessions_revoked=revoked)


def password_change(
    *, user: User, old_password: str, new_password: str, current_session_id: str | None, ip: str | None
) -> None:
    """``POST auth/password/change``: needs the current password; signs out the other sessions."""
    throttle_hit(scope="auth_login", ident=f"user:{user.pk}")
    if not user.check_password(old_password):
        audit_record(
            kind=AuditEvent.Kind.LOGIN_FAILED,
            actor=user,
            target=user,
            ip=ip,
            data={"reason": "password_change"},
        )
        raise ValidationFailed(errors={"old_password": ["The current password is wrong."]})
    password_check_strength(password=new_password, user=user)
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password", "updated_at"])
        revoked = session_revoke_all_for_user(
            user=user, reason="password_changed", except_session_id=current_session_id
        )
        audit_record(
            kind=AuditEvent.Kind.PASSWORD_CHANGED,
            actor=user,
            target=user,
            ip=ip,
            data={"sessions_revoked": revoked},
        )
        account_email_send(user=user, template="password_changed", context={})
    logger.info("password_changed", user_id=str(user.pk), sessions_revoked=revoked)
