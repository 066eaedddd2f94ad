from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.utils import translation

from apps.accounts.services.emails import (
    ACCOUNT_EMAIL_TEMPLATES,
    account_email_deliver,
    account_email_render,
    account_email_send,
    email_locale_for,
)
from tests.factories import UserFactory

CONTEXTS = {
    "verify_email": {"url": "https://app.example/verify?token=abc", "expires_hours": 48},
    "password_reset": {"url": "https://app.example/reset?token=abc", "expires_minutes": 60},
    "device_challenge": {"code": "123456", "device_name": "Pixel <9>", "expires_minutes": 10},
    "recovery_code_used": {"remaining": 1},
    "token_reused": {"device_name": "Pixel 9"},
}


@pytest.mark.parametrize(
    "locale,expected", [("de", "de"), ("de-AT", "de"), ("de_CH", "de"), ("fr", "en"), ("", "en")]
)
def test_email_language_follows_the_users_locale(locale, expected):
    assert email_locale_for(locale=locale) == expected


@pytest.mark.django_db
@pytest.mark.parametrize("template", sorted(ACCOUNT_EMAIL_TEMPLATES))
@pytest.mark.parametrize("locale", ["en", "de"])
def test_every_account_email_renders_text_and_html_in_both_languages(template, locale):
    user = UserFactory(locale=locale, display_name="O'Brien & Co")

    subject, text, html = account_email_render(
        user=user, template=template, context=CONTEXTS.get(template, {})
    )

    assert subject and "\n" not in subject
    assert "O'Brien & Co" in text  # plain text is not HTML-escaped
    assert "O&#x27;Brien &amp; Co" in html  # HTML is
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in html
    if template == "device_challenge":
        assert "123456" in text and "123456" in html
        assert "Pixel &lt;9&gt;" in html


@pytest.mark.django_db
def test_german_user_gets_german_email():
    user = UserFactory(locale="de", display_name="Jana")

    subject, text, html = account_email_render(
        user=user, template="device_challenge", context=CONTEXTS["device_challenge"]
    )

    assert subject == "Dein Bestätigungscode: 123456"
    assert text.startswith("Hallo Jana,")
    assert "Der Code ist 10 Minuten gültig." in text
    assert "gib den Code an niemanden weiter" in html


@pytest.mark.django_db
def test_plural_forms_are_translated():
    user = UserFactory(locale="de")

    _, one, _ = account_email_render(user=user, template="recovery_code_used", context={"remaining": 1})
    _, many, _ = account_email_render(user=user, template="recovery_code_used", context={"remaining": 4})

    assert "noch 1 Code." in one
    assert "noch 4 Codes." in many


@pytest.mark.django_db
def test_email_is_queued_on_commit_and_sent_by_the_task(django_capture_on_commit_callbacks):
    user = UserFactory(email="queued@example.com")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        account_email_send(user=user, template="password_changed", context={})
    assert mail.outbox == []  # nothing before the commit

    for callback in callbacks:
        callback()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["queued@example.com"]
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert message.alternatives[0][1] == "text/html"


@pytest.mark.django_db
def test_a_delivery_that_runs_twice_sends_once():
    user = UserFactory()

    first = account_email_deliver(user_id=str(user.pk), template="mfa_enabled", context={}, delivery_id="d-1")
    second = account_email_deliver(
        user_id=str(user.pk), template="mfa_enabled", context={}, delivery_id="d-1"
    )

    assert (first, second) == (True, False)
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_delivery_for_a_deleted_user_is_dropped():
    assert (
        account_email_deliver(
            user_id="00000000-0000-0000-0000-000000000000",
            template="mfa_enabled",
            context={},
            delivery_id="d-2",
        )
        is False
    )


@pytest.mark.django_db
def test_unknown_template_is_refused():
    with pytest.raises(ValueError):
        account_email_send(user=UserFactory(), template="phishing", context={})


def _po_messages(text: str) -> list[str]:
    """The singular msgids of a .po file (continuation lines joined)."""
    messages, current, in_msgid = [], "", False
    for line in text.splitlines():
        if line.startswith("msgid "):
            current, in_msgid = line[6:].strip().strip('"'), True
        elif in_msgid and line.startswith('"'):
            current += line.strip().strip('"')
        else:
            if in_msgid and current:
                messages.append(current.replace('\\"', '"'))
            in_msgid = False
    return messages


def test_german_catalog_is_compiled_and_current():
    po = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES" / "django.po"
    messages = [m for m in _po_messages(po.read_text()) if "%(remaining)s" not in m]

    assert po.with_suffix(".mo").exists()
    assert len(messages) > 20
    with translation.override("de"):
        untranslated = [m for m in messages if translation.gettext(m) == m]
    assert untranslated == []
