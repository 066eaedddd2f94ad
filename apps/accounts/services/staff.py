"""What staff do to accounts from the admin. Every action is audited with the staff actor."""

from __future__ import annotations

from django.db import transaction

from apps.accounts.models import AuditEvent, RecoveryCode, Session, TotpDevice, User
from apps.accounts.services.audit import audit_record


def _staff_audit(*, staff: User, target: User | None, action: str, ip: str | None, **data: object) -> None:
    audit_record(
        kind=AuditEvent.Kind.STAFF_ACTION,
        actor=staff,
        target=target,
        ip=ip,
        data={"action": action, **data},
    )


def user_deactivate_by_staff(*, staff: User, user: User, ip: str | None = None) -> bool:
    """Deactivate ``user`` (no sign-in, every session revoked). No erasure is scheduled.

    Returns False when the account was already inactive (sessions are revoked
    again all the same).
    """
    from apps.accounts.services.sessions import session_revoke_all_for_user

    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        changed = locked.is_active
        if changed:
            locked.is_active = False
            locked.save(update_fields=["is_active", "updated_at"])
        revoked = session_revoke_all_for_user(user=locked, reason="staff_deactivated")
        _staff_audit(staff=staff, target=locked, action="deactivate", ip=ip, sessions_revoked=revoked)
    return changed


def user_reactivate_by_staff(*, staff: User, user: User, ip: str | None = None) -> bool:
    """Let ``user`` sign in again; this also cancels an account deletion that is not erased yet."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.is_active and locked.deletion_requested_at is None:
            return False
        cancelled = locked.deletion_requested_at is not None
        locked.is_active = True
        locked.deletion_requested_at = None
        locked.save(update_fields=["is_active", "deletion_requested_at", "updated_at"])
        _staff_audit(staff=staff, target=locked, action="reactivate", ip=ip, deletion_cancelled=cancelled)
    return True


def user_sessions_revoke_by_staff(*, staff: User, user: User, ip: str | None = None) -> int:
    """Force logout: revoke every session of ``user``. Returns how many were open."""
    from apps.accounts.services.sessions import session_revoke_all_for_user

    with transaction.atomic():
        revoked = session_revoke_all_for_user(user=user, reason="staff_force_logout")
        _staff_audit(staff=staff, target=user, action="force_logout", ip=ip, sessions_revoked=revoked)
    return revoked


def user_mfa_reset_by_staff(*, staff: User, user: User, ip: str | None = None) -> bool:
    """Remove the authenticator and recovery codes of ``user`` (lost phone).

    The user signs in with the password alone afterwards and can enrol again.
    Returns False when MFA was not set up.
    """
    with transaction.atomic():
        had_totp, _ = TotpDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        if had_totp:
            audit_record(
                kind=AuditEvent.Kind.MFA_DISABLED, actor=staff, target=user, ip=ip, data={"via": "staff"}
            )
        _staff_audit(staff=staff, target=user, action="reset_mfa", ip=ip, had_mfa=bool(had_totp))
    return bool(had_totp)


def session_revoke_by_staff(*, staff: User, session: Session, ip: str | None = None) -> bool:
    """Revoke one session from the admin. Returns False when it was already revoked."""
    from apps.accounts.services.sessions import session_revoke

    if session.revoked_at is not None:
        return False
    with transaction.atomic():
        session_revoke(session_id=str(session.pk), reason="staff", actor=staff)
        _staff_audit(
            staff=staff, target=session.user, action="revoke_session", ip=ip, session_id=str(session.pk)
        )
    return True
