"""Step-up for a sign-in from a device the account has not verified.

The waiting device gets a ``challenge_id``. The user then either types the
6-digit code we sent (``verify``) or approves the sign-in from a trusted
device (``approve``), after which the waiting device collects its tokens with
``poll``. Codes live ``ACCOUNT_CHALLENGE_TTL_SECONDS`` (10 min), are single
use, stored as keyed hashes, and a challenge dies after
``ACCOUNT_CHALLENGE_MAX_ATTEMPTS`` wrong codes.

Delivery of the code is by email; the user's signed-in apps also get a
``device_challenge.pending`` event on ``user:me`` (without the code) to offer
the approval. The notifications app, once it exists, adds a push to the
user's trusted devices in :func:`_challenge_deliver`.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import AuditEvent, Device, DeviceChallenge, Session, User
from apps.accounts.services.audit import audit_record
from apps.accounts.services.emails import account_email_send
from apps.accounts.services.mfa import InvalidCode
from apps.accounts.services.sessions import IssuedTokens, ip_coarse, secret_hash, session_start
from apps.core.exceptions import KeelError, NotFound, PermissionDeniedError
from apps.core.throttling import throttle_hit

logger = structlog.get_logger(__name__)


class ChallengeExpired(KeelError):
    status_code = 410
    code = "challenge_expired"
    title = "Challenge expired"
    default_detail = (
        "This verification is no longer valid (expired, used or too many wrong codes); sign in again."
    )


def _code_hash(*, challenge_id: uuid.UUID, code: str) -> str:
    return secret_hash(value=f"{challenge_id}:{code}", purpose="device-challenge")


def _parse_id(challenge_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(challenge_id))
    except (TypeError, ValueError):
        raise NotFound("No such challenge.") from None


def _device_dict(device: Device) -> dict[str, str]:
    return {"device_id": device.device_id, "name": device.name, "platform": device.platform}


def device_challenge_create(
    *,
    user: User,
    device: dict[str, str],
    ip: str | None,
    user_agent: str | None,
    via: str,
    reason: str = "new_device",
) -> DeviceChallenge:
    """Open a challenge for ``device`` and send its code; older open ones for it are dropped."""
    from apps.accounts.services.sessions import device_get_or_create

    now = timezone.now()
    challenge_id = uuid.uuid4()
    code = f"{secrets.randbelow(10**6):06d}"
    with transaction.atomic():
        record = device_get_or_create(user=user, device=device)
        DeviceChallenge.objects.filter(
            user=user, device=record, status=DeviceChallenge.Status.PENDING
        ).update(status=DeviceChallenge.Status.FAILED)
        challenge = DeviceChallenge.objects.create(
            id=challenge_id,
            user=user,
            device=record,
            code_hash=_code_hash(challenge_id=challenge_id, code=code),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.ACCOUNT_CHALLENGE_TTL_SECONDS),
            via=via[:32],
            ip=ip or None,
            user_agent=(user_agent or "")[:256],
            reason=reason[:32],
        )
        audit_record(
            kind=AuditEvent.Kind.STEP_UP_CHALLENGED,
            actor=None,
            target=user,
            ip=ip,
            data={"challenge_id": str(challenge.id), "device_id": record.device_id, "reason": reason},
        )
        _challenge_deliver(challenge=challenge, code=code)
    logger.info("device_challenge_created", challenge_id=str(challenge.id), user_id=str(user.pk))
    return challenge


def _challenge_deliver(*, challenge: DeviceChallenge, code: str) -> None:
    """Send the code to the account's owner (email), and tell their signed-in apps.

    The realtime event (on ``user:me``, without the code) lets a trusted device
    show the approval prompt at once.
    """
    from apps.realtime.services import event_publish

    event_publish(
        topic=f"user:{challenge.user_id}",
        event="device_challenge.pending",
        payload={
            "challenge_id": str(challenge.id),
            "device": {"name": challenge.device.name, "platform": challenge.device.platform},
            "ip": ip_coarse(challenge.ip),
            "expires_at": challenge.expires_at.isoformat().replace("+00:00", "Z"),
        },
    )
    account_email_send(
        user=challenge.user,
        template="device_challenge",
        context={
            "code": code,
            "device_name": challenge.device.name or challenge.device.device_id,
            "platform": challenge.device.platform,
            "ip": ip_coarse(challenge.ip),
            "expires_minutes": max(1, settings.ACCOUNT_CHALLENGE_TTL_SECONDS // 60),
        },
    )


def _is_open(challenge: DeviceChallenge) -> bool:
    return (
        challenge.status in (DeviceChallenge.Status.PENDING, DeviceChallenge.Status.APPROVED)
        and challenge.expires_at > timezone.now()
    )


def _complete(*, challenge: DeviceChallenge, ip: str | None, user_agent: str | None) -> IssuedTokens:
    """Mark ``challenge`` (locked) completed and open the waiting device's session, trusted.

    Single use: a second verify or poll of a completed challenge is ``410``.
    """
    challenge.status = DeviceChallenge.Status.COMPLETED
    challenge.completed_at = timezone.now()
    challenge.save(update_fields=["status", "completed_at"])
    return session_start(
        user=challenge.user,
        device=_device_dict(challenge.device),
        ip=ip or challenge.ip,
        user_agent=user_agent or challenge.user_agent,
        trust_device=True,
        via="challenge",
    )


def device_challenge_verify(
    *, challenge_id: str, code: str, ip: str | None, user_agent: str | None
) -> IssuedTokens:
    """Exchange the emailed code for the waiting sign-in's tokens; the device is trusted from then on."""
    parsed = _parse_id(challenge_id)
    throttle_hit(scope="auth_challenge", ident=f"challenge:{parsed}")
    candidate = (code or "").strip()
    outcome = "expired"
    with transaction.atomic():
        challenge = (
            DeviceChallenge.objects.select_for_update(of=("self",))
            .select_related("user", "device")
            .filter(pk=parsed)
            .first()
        )
        if challenge is None:
            raise NotFound("No such challenge.")
        if _is_open(challenge) and challenge.user.is_active:
            if hmac.compare_digest(challenge.code_hash, _code_hash(challenge_id=parsed, code=candidate)):
                tokens = _complete(challenge=challenge, ip=ip, user_agent=user_agent)
                audit_record(
                    kind=AuditEvent.Kind.STEP_UP_VERIFIED,
                    actor=challenge.user,
                    target=challenge.user,
                    ip=ip,
                    data={"challenge_id": str(parsed), "device_id": challenge.device.device_id},
                )
                return tokens
            challenge.attempts += 1
            outcome = "wrong"
            if challenge.attempts >= settings.ACCOUNT_CHALLENGE_MAX_ATTEMPTS:
                challenge.status = DeviceChallenge.Status.FAILED
                outcome = "exhausted"
            challenge.save(update_fields=["attempts", "status"])
            audit_record(
                kind=AuditEvent.Kind.STEP_UP_FAILED,
                actor=None,
                target=challenge.user,
                ip=ip,
                data={"challenge_id": str(parsed), "attempts": challenge.attempts},
            )
    # Raised after the transaction, which keeps the counted attempt.
    if outcome == "exhausted":
        raise ChallengeExpired("Too many wrong codes; sign in again to get a new one.")
    if outcome == "wrong":
        raise InvalidCode()
    raise ChallengeExpired()


def device_challenge_approve(*, challenge_id: str, user: User, session_id: str | None) -> None:
    """Approve a waiting sign-in from a trusted device of the same user.

    Another user's challenge is ``404``; approving from a device that is not
    trusted is ``403``. Approving twice is harmless.
    """
    parsed = _parse_id(challenge_id)
    approver = (
        Session.objects.select_related("device")
        .filter(pk=session_id, user=user, revoked_at__isnull=True)
        .first()
        if session_id
        else None
    )
    with transaction.atomic():
        challenge = (
            DeviceChallenge.objects.select_for_update(of=("self",))
            .select_related("device")
            .filter(pk=parsed, user=user)
            .first()
        )
        if challenge is None:
            raise NotFound("No such challenge.")
        if approver is None or not approver.device.is_trusted:
            raise PermissionDeniedError("Only a trusted device of this account can approve a sign-in.")
        if approver.device_id == challenge.device_id:
            raise PermissionDeniedError("A device cannot approve its own sign-in.")
        if challenge.status == DeviceChallenge.Status.APPROVED and _is_open(challenge):
            return
        if not _is_open(challenge):
            raise ChallengeExpired()
        challenge.status = DeviceChallenge.Status.APPROVED
        challenge.approved_at = timezone.now()
        challenge.approved_by_session = approver
        challenge.save(update_fields=["status", "approved_at", "approved_by_session"])
        audit_record(
            kind=AuditEvent.Kind.STEP_UP_APPROVED,
            actor=user,
            target=user,
            data={
                "challenge_id": str(parsed),
                "device_id": challenge.device.device_id,
                "approved_by_session": str(approver.pk),
            },
        )
    logger.info("device_challenge_approved", challenge_id=str(parsed), user_id=str(user.pk))


def device_challenge_poll(
    *, challenge_id: str, ip: str | None, user_agent: str | None
) -> IssuedTokens | None:
    """The waiting device asks whether it was approved.

    Tokens once approved (the challenge is then done), or ``None`` while pending.
    """
    parsed = _parse_id(challenge_id)
    with transaction.atomic():
        challenge = (
            DeviceChallenge.objects.select_for_update(of=("self",))
            .select_related("user", "device")
            .filter(pk=parsed)
            .first()
        )
        if challenge is None:
            raise NotFound("No such challenge.")
        if _is_open(challenge) and challenge.user.is_active:
            if challenge.status == DeviceChallenge.Status.PENDING:
                return None
            return _complete(challenge=challenge, ip=ip, user_agent=user_agent)
    raise ChallengeExpired()
