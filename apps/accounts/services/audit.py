from __future__ import annotations

from typing import Any

from apps.accounts.models import AuditEvent, User
from apps.core.logging import scrub_value
from apps.core.request_context import get_request_id


def audit_record(
    *,
    kind: str,
    actor: User | None = None,
    target: User | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append a security event. ``data`` is scrubbed: no secret or address is stored."""
    return AuditEvent.objects.create(
        kind=kind,
        actor=actor if actor is not None and actor.pk else None,
        target=target if target is not None and target.pk else None,
        ip=ip or None,
        request_id=get_request_id() or "",
        data=scrub_value(data or {}),
    )
