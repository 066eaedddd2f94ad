"""Privacy: a copy of everything a user owns (``me/export``) and account deletion (``DELETE me``).

Every app contributes through two registries in the settings, so a new app
plugs in without touching accounts:

- ``KEEL_ACCOUNT_EXPORTERS``: dotted paths of ``fn(*, user) -> dict[str, Any]``.
  The dict is JSON-serialisable (datetimes, UUIDs and decimals are fine) and
  keyed by section (``"documents"``, ``"files"``); two exporters may not use
  the same section name.
- ``KEEL_ACCOUNT_ERASERS``: dotted paths of ``fn(*, user) -> None`` that delete
  or anonymise what the app holds about ``user``. They run inside the
  erasure's transaction with the user row locked, before the row is deleted,
  and must be idempotent: a failed erasure is retried by the next run.
  Work outside the database (deleting stored files) belongs in
  ``transaction.on_commit``.

``DELETE me`` deactivates the account at once and revokes every session; the
periodic ``accounts_erase_due`` job erases it after
``ACCOUNT_DELETION_GRACE_DAYS``. Re-authentication for ``DELETE me`` is the
password, or a sign-in of the calling session within
``ACCOUNT_REAUTH_MAX_AGE_SECONDS`` (5 minutes by default): accounts without a
password (social login) sign in again and delete within that window. A
retried ``DELETE me`` whose first attempt went through answers ``401``: the
access token died with the account's sessions, and nothing more happens.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import structlog
from django.conf import settings
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.accounts.models import (
    AuditEvent,
    DataExport,
    Device,
    OAuthAuthorization,
    Session,
    SocialIdentity,
    User,
)
from apps.accounts.services.audit import audit_record
from apps.accounts.services.encryption import pseudonym_for
from apps.core.exceptions import NotFound, PermissionDeniedError, ValidationFailed
from apps.core.throttling import throttle_hit

logger = structlog.get_logger(__name__)

EXPORT_FORMAT = "keel.account-export"
EXPORT_FORMAT_VERSION = 1
# A pending export older than this lost its job (worker gone, broker down):
# it is marked failed and a new request starts a new one.
EXPORT_STALE_AFTER = timedelta(hours=1)
_DOWNLOAD_SALT = "keel.accounts.export-download"
# Audit data keys that describe the event rather than the person; everything
# else in ``data`` is dropped when the subject is erased.
_AUDIT_KEYS_KEPT_ON_ERASURE = frozenset({"reason", "via", "action", "method", "provider", "kind", "result"})


class ReauthenticationRequired(PermissionDeniedError):
    code = "reauthentication_required"
    title = "Re-authentication required"
    default_detail = "Confirm with your password, or sign in again and retry within a few minutes."


class ExportLinkExpired(PermissionDeniedError):
    code = "link_expired"
    title = "Link expired"
    default_detail = "This download link has expired; ask for the export again to get a fresh link."


# --- Registries --------------------------------------------------------------


@lru_cache(maxsize=16)
def _load(paths: tuple[str, ...]) -> tuple[Callable[..., Any], ...]:
    return tuple(import_string(path) for path in paths)


def account_exporters() -> tuple[Callable[..., dict[str, Any]], ...]:
    return _load(tuple(getattr(settings, "KEEL_ACCOUNT_EXPORTERS", [])))


def account_erasers() -> tuple[Callable[..., None], ...]:
    return _load(tuple(getattr(settings, "KEEL_ACCOUNT_ERASERS", [])))


# --- Export --------------------------------------------------------------------


def data_export_request(*, user: User, ip: str | None = None) -> DataExport:
    """Start building a copy of the user's data; a pending request is reused.

    The user row is locked so that two concurrent requests start one job.
    """
    from apps.accounts.tasks import data_export_build as build_task

    with transaction.atomic():
        User.objects.select_for_update().only("pk").get(pk=user.pk)
        pending = DataExport.objects.filter(user=user, status=DataExport.Status.PENDING).first()
        if pending is not None:
            if pending.created_at > timezone.now() - EXPORT_STALE_AFTER:
                return pending
            _data_export_mark_failed(export=pending, error="timed_out")
        export = DataExport.objects.create(user=user)
        audit_record(
            kind=AuditEvent.Kind.DATA_EXPORTED,
            actor=user,
            target=user,
            ip=ip,
            data={"export_id": str(export.id), "stage": "requested"},
        )
        export_id = str(export.id)
        # robust: a broker that is down must not turn the accepted request
        # into an error; the pending export goes stale and is retried.
        transaction.on_commit(lambda: build_task.delay(export_id), robust=True)
    return export


def data_export_document(*, user: User) -> dict[str, Any]:
    """The export document: every registered exporter's sections, under one envelope."""
    sections: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for exporter in account_exporters():
        name = f"{exporter.__module__}.{exporter.__qualname__}"
        part = exporter(user=user)
        for section, value in part.items():
            if section in sections:
                raise ImproperlyConfigured(f"Exporters {owners[section]} and {name} both write '{section}'.")
            sections[section] = value
            owners[section] = name
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "user_id": str(user.pk),
        "generated_at": timezone.now(),
        "sections": sections,
    }


def _export_file_name(export: DataExport) -> str:
    return f"accounts/exports/{export.user_id}/{export.id}.json"


def data_export_build(*, export_id: str) -> DataExport | None:
    """Build and store the document of a pending export. Safe to run twice.

    Exceptions of exporters propagate (the task decides between retry and
    failure); a concurrent run that finished first wins and the late file is
    removed.
    """
    import json

    export = DataExport.objects.select_related("user").filter(pk=export_id).first()
    if export is None or export.status != DataExport.Status.PENDING:
        return export
    document = data_export_document(user=export.user)
    content = json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2).encode()
    stored_name = default_storage.save(_export_file_name(export), ContentFile(content))
    with transaction.atomic():
        locked = DataExport.objects.select_for_update().get(pk=export.pk)
        if locked.status != DataExport.Status.PENDING:
            transaction.on_commit(lambda: default_storage.delete(stored_name))
            return locked
        locked.status = DataExport.Status.READY
        locked.file_name = stored_name
        locked.size = len(content)
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "file_name", "size", "finished_at"])
    logger.info("data_export_ready", export_id=str(locked.id), size=locked.size)
    return locked


def _storage_delete(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


def _data_export_mark_failed(*, export: DataExport, error: str) -> None:
    export.status = DataExport.Status.FAILED
    export.error = error[:64]
    export.finished_at = timezone.now()
    export.save(update_fields=["status", "error", "finished_at"])


def data_export_fail(*, export_id: str, error: str) -> None:
    """Mark a pending export failed (``error`` is a stable machine reason)."""
    with transaction.atomic():
        export = DataExport.objects.select_for_update().filter(pk=export_id).first()
        if export is not None and export.status == DataExport.Status.PENDING:
            _data_export_mark_failed(export=export, error=error)


def data_export_get_for_user(*, user: User, export_id: str) -> DataExport:
    """The user's own export; another user's (or an unknown) id is ``404``."""
    export = DataExport.objects.filter(pk=export_id, user=user).first()
    if export is None:
        raise NotFound()
    return export


def data_export_download_token(*, export: DataExport) -> tuple[str, datetime]:
    """A signed token for the download link of ``export``, and when it stops working."""
    token = signing.TimestampSigner(salt=_DOWNLOAD_SALT).sign(str(export.id))
    return token, timezone.now() + timedelta(seconds=settings.EXPORT_URL_TTL_SECONDS)


def data_export_open_for_download(*, export_id: str, token: str) -> tuple[DataExport, File]:
    """The ready export a download link points at, and its stored document opened for reading.

    A tampered token, or one for another export, is ``404``; an expired one is
    ``403 link_expired`` (the app asks ``GET me/export/{id}`` for a fresh link).
    """
    signer = signing.TimestampSigner(salt=_DOWNLOAD_SALT)
    try:
        signed_id = signer.unsign(token, max_age=timedelta(seconds=settings.EXPORT_URL_TTL_SECONDS))
    except signing.SignatureExpired:
        raise ExportLinkExpired() from None
    except signing.BadSignature:
        raise NotFound() from None
    if signed_id != str(export_id):
        raise NotFound()
    export = DataExport.objects.filter(pk=signed_id, status=DataExport.Status.READY).first()
    if export is None or not export.file_name:
        raise NotFound()
    try:
        document = default_storage.open(export.file_name, "rb")
    except FileNotFoundError:
        raise NotFound() from None
    return export, document


def data_exports_purge_expired(*, now: datetime | None = None) -> int:
    """Delete exports (rows and files) older than ``ACCOUNT_EXPORT_RETENTION_DAYS``."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.ACCOUNT_EXPORT_RETENTION_DAYS)
    purged = 0
    for export in DataExport.objects.filter(created_at__lt=cutoff).only("pk", "file_name").iterator():
        if export.file_name:
            default_storage.delete(export.file_name)
        export.delete()
        purged += 1
    return purged


# --- The accounts app's own exporter and eraser ------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def accounts_export_for_user(*, user: User) -> dict[str, Any]:
    """What accounts holds about ``user``: profile, MFA state, devices, sessions, social
    identities, hosted (OAuth) sign-ins and the audit trail about them. Never a secret or hash."""
    from apps.accounts.services.profile import mfa_enabled_for

    profile = {
        "id": str(user.pk),
        "email": user.email,
        "email_verified": user.email_verified,
        "display_name": user.display_name,
        "phone": user.phone or None,
        "avatar_file_id": user.avatar_file_id or None,
        "locale": user.locale,
        "timezone": user.timezone,
        "created_at": _iso(user.created_at),
        "last_login": _iso(user.last_login),
        "is_active": user.is_active,
        "deletion_requested_at": _iso(user.deletion_requested_at),
        "roles": sorted(user.groups.values_list("name", flat=True)),
    }
    devices = [
        {
            "device_id": d.device_id,
            "name": d.name,
            "platform": d.platform,
            "trusted_at": _iso(d.trusted_at),
            "created_at": _iso(d.created_at),
            "last_seen_at": _iso(d.last_seen_at),
        }
        for d in Device.objects.filter(user=user).order_by("created_at")
    ]
    sessions = [
        {
            "id": str(s.id),
            "device_id": s.device.device_id,
            "via": s.via,
            "created_at": _iso(s.created_at),
            "last_seen_at": _iso(s.last_seen_at),
            "expires_at": _iso(s.expires_at),
            "ip": s.ip,
            "user_agent": s.user_agent,
            "revoked_at": _iso(s.revoked_at),
            "revoke_reason": s.revoke_reason,
        }
        for s in Session.objects.filter(user=user).select_related("device").order_by("created_at")
    ]
    events = [
        {
            "kind": e.kind,
            "created_at": _iso(e.created_at),
            # Staff members stay anonymous; the user sees that staff acted.
            "actor": "self" if e.actor_id == user.pk else ("staff" if e.actor_id else None),
            "ip": e.ip,
            "data": e.data,
        }
        for e in AuditEvent.objects.filter(Q(target=user) | Q(actor=user)).order_by("created_at")
    ]
    social_identities = [
        {
            "provider": i.provider,
            "subject": i.subject,
            "created_at": _iso(i.created_at),
            "last_login_at": _iso(i.last_login_at),
        }
        for i in SocialIdentity.objects.filter(user=user).order_by("created_at")
    ]
    oauth_sign_ins = [
        {
            "client": a.application.name,
            "created_at": _iso(a.created_at),
            "exchanged_at": _iso(a.exchanged_at),
            "revoked_at": _iso(a.revoked_at),
        }
        for a in OAuthAuthorization.objects.filter(user=user)
        .select_related("application")
        .order_by("created_at")
    ]
    return {
        "profile": profile,
        "mfa": {"enabled": mfa_enabled_for(user=user)},
        "devices": devices,
        "sessions": sessions,
        "social_identities": social_identities,
        "oauth_sign_ins": oauth_sign_ins,
        "audit_events": events,
    }


def accounts_erase_for_user(*, user: User) -> None:
    """Remove what accounts keeps about ``user`` beyond the user row and its cascade.

    Exports (rows now, files after commit) go; audit events about the user are
    pseudonymised: IP and personal details dropped, a stable pseudonym kept so
    the security trail still reads as one subject. The user row itself (with
    sessions, devices, MFA, tokens by cascade) is deleted by the caller.
    """
    exports = DataExport.objects.filter(user=user)
    file_names = [name for name in exports.values_list("file_name", flat=True) if name]
    DataExport.objects.filter(user=user).delete()
    if file_names:
        transaction.on_commit(lambda: _storage_delete(file_names))

    subject = pseudonym_for(kind="user", value=str(user.pk))
    about_user = AuditEvent.objects.filter(Q(target=user) | Q(actor=user))
    for event in about_user.only("pk", "data").iterator():
        kept = {k: v for k, v in (event.data or {}).items() if k in _AUDIT_KEYS_KEPT_ON_ERASURE}
        # The one sanctioned rewrite of audit rows: erasure of the subject
        # (a queryset update, since AuditEvent.save refuses to rewrite rows).
        AuditEvent.objects.filter(pk=event.pk).update(ip=None, data={**kept, "subject": subject})

    user.display_name = ""
    user.phone = ""
    user.avatar_file_id = ""
    user.save(update_fields=["display_name", "phone", "avatar_file_id", "updated_at"])


# --- Deletion -------------------------------------------------------------------


def _signed_in_recently(*, user: User, session_id: str | None) -> bool:
    if not session_id:
        return False
    window = timedelta(seconds=settings.ACCOUNT_REAUTH_MAX_AGE_SECONDS)
    return Session.objects.filter(
        pk=session_id, user=user, revoked_at__isnull=True, created_at__gte=timezone.now() - window
    ).exists()


def account_delete_request(
    *, user: User, password: str | None, session_id: str | None, ip: str | None = None
) -> datetime:
    """``DELETE me``: check re-authentication, deactivate now, erase after the grace period.

    Every session is revoked (access tokens stop working at once: the user is
    inactive). Asking again while already deactivated changes nothing.
    Returns when the account will be erased.
    """
    from apps.accounts.services.sessions import session_revoke_all_for_user

    if password:
        # Per account (the bucket of password change), so a stolen access
        # token cannot be used to guess the password.
        throttle_hit(scope="auth_login", ident=f"user:{user.pk}")
        if not user.check_password(password):
            audit_record(
                kind=AuditEvent.Kind.LOGIN_FAILED,
                actor=user,
                target=user,
                ip=ip,
                data={"reason": "delete_account"},
            )
            raise ValidationFailed(errors={"password": ["The password is wrong."]})
    elif not _signed_in_recently(user=user, session_id=session_id):
        raise ReauthenticationRequired()

    grace = timedelta(days=settings.ACCOUNT_DELETION_GRACE_DAYS)
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        requested_at = locked.deletion_requested_at
        if requested_at is None:
            requested_at = locked.deletion_requested_at = timezone.now()
            locked.is_active = False
            locked.save(update_fields=["deletion_requested_at", "is_active", "updated_at"])
            audit_record(
                kind=AuditEvent.Kind.ACCOUNT_DEACTIVATED,
                actor=locked,
                target=locked,
                ip=ip,
                data={"reason": "user_request", "erase_after": (requested_at + grace).isoformat()},
            )
        session_revoke_all_for_user(user=locked, reason="account_deleted")
    return requested_at + grace


def account_ids_due_for_erasure(*, now: datetime | None = None, limit: int = 500) -> list[str]:
    cutoff = (now or timezone.now()) - timedelta(days=settings.ACCOUNT_DELETION_GRACE_DAYS)
    ids = (
        User.objects.filter(is_active=False, deletion_requested_at__lte=cutoff)
        .order_by("deletion_requested_at")
        .values_list("pk", flat=True)[:limit]
    )
    return [str(pk) for pk in ids]


def account_erase(*, user_id: str, now: datetime | None = None) -> bool:
    """Erase one account whose deletion is due: every eraser, then the user row.

    Holds the user row lock for the whole erasure, so staff cannot reactivate
    the account half way. Returns False when there was nothing (more) to do.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.ACCOUNT_DELETION_GRACE_DAYS)
    with transaction.atomic():
        user = User.objects.select_for_update().filter(pk=user_id).first()
        if user is None or user.is_active or user.deletion_requested_at is None:
            return False
        if user.deletion_requested_at > cutoff:
            return False
        subject = pseudonym_for(kind="user", value=str(user.pk))
        erasers = account_erasers()
        for eraser in erasers:
            eraser(user=user)
        user.delete()
        audit_record(kind=AuditEvent.Kind.ACCOUNT_ERASED, data={"subject": subject, "erasers": len(erasers)})
    logger.info("account_erased", subject=subject)
    return True
