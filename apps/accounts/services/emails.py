"""Account emails (verification, reset, step-up codes, security notices).

Rendered from ``templates/accounts/email/<template>.{subject.txt,txt,html}`` in
the recipient's language (``user.locale``; English when Keel has no
translation for it) and sent by a background job queued after the
transaction commits.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation

from apps.accounts.models import User

logger = structlog.get_logger(__name__)

ACCOUNT_EMAIL_TEMPLATES = frozenset(
    {
        "verify_email",
        "password_reset",
        "password_changed",
        "device_challenge",
        "mfa_enabled",
        "mfa_disabled",
        "recovery_code_used",
        "token_reused",
    }
)
# A delivery is remembered this long so a task that runs twice sends once.
_SENT_MARKER_TTL_SECONDS = 24 * 3600


def email_locale_for(*, locale: str | None) -> str:
    """The supported language closest to ``locale`` (``de-AT`` -> ``de``), else the default."""
    supported = {code for code, _name in settings.LANGUAGES}
    candidate = (locale or "").replace("_", "-").lower()
    if candidate in supported:
        return candidate
    base = candidate.split("-", 1)[0]
    return base if base in supported else settings.LANGUAGE_CODE


def account_email_send(*, user: User, template: str, context: dict[str, Any]) -> None:
    """Queue ``template`` for ``user`` once the current transaction commits.

    ``context`` must be JSON-serialisable; it travels to the worker.
    """
    if template not in ACCOUNT_EMAIL_TEMPLATES:
        raise ValueError(f"Unknown account email template {template!r}.")
    user_id = str(user.pk)
    delivery_id = uuid.uuid4().hex

    def enqueue() -> None:
        account_email_deliver_task.delay(
            user_id=user_id, template=template, context=context, delivery_id=delivery_id
        )

    transaction.on_commit(enqueue)


def account_email_render(*, user: User, template: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """Subject, text and HTML of ``template`` for ``user``, in the user's language."""
    with translation.override(email_locale_for(locale=user.locale)):
        full_context = {
            "user": user,
            "display_name": user.display_name,
            "product_name": settings.ACCOUNT_TOTP_ISSUER,
            **context,
        }
        subject = render_to_string(f"accounts/email/{template}.subject.txt", full_context)
        text = render_to_string(f"accounts/email/{template}.txt", full_context)
        html = render_to_string(f"accounts/email/{template}.html", full_context)
    return " ".join(subject.split()), text, html


def account_email_deliver(*, user_id: str, template: str, context: dict[str, Any], delivery_id: str) -> bool:
    """Render and send one account email; ``False`` when it was already sent or has no recipient."""
    marker = f"accounts:email_sent:{delivery_id}"
    if cache.get(marker):
        return False
    user = User.objects.filter(pk=user_id).first()
    if user is None or not user.email:
        return False
    subject, text, html = account_email_render(user=user, template=template, context=context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[user.email])
    message.attach_alternative(html, "text/html")
    message.send()
    cache.set(marker, 1, timeout=_SENT_MARKER_TTL_SECONDS)
    logger.info("account_email_sent", template=template, user_id=user_id)
    return True


@shared_task(name="apps.accounts.account_email_deliver", soft_time_limit=60, time_limit=90)
def account_email_deliver_task(
    *, user_id: str, template: str, context: dict[str, Any], delivery_id: str
) -> bool:
    return account_email_deliver(user_id=user_id, template=template, context=context, delivery_id=delivery_id)
