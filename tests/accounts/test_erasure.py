"""DELETE me deactivates at once; the periodic job erases the account after the grace period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.accounts.models import AuditEvent, DataExport, Device, Session, TotpDevice, User
from apps.accounts.services.encryption import pseudonym_for
from apps.accounts.services.login import InvalidCredentials, login_with_password
from apps.accounts.services.sessions import session_start
from apps.accounts.tasks import account_erase, accounts_erase_due
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"
DEVICE = {"device_id": "phone-1", "name": "Pixel 9", "platform": "android"}

ERASED_BY_TEST_ERASER: list[str] = []


def recording_eraser(*, user: Any) -> None:
    ERASED_BY_TEST_ERASER.append(str(user.pk))


def broken_eraser(*, user: Any) -> None:
    raise RuntimeError("eraser bug")


def _age_session(user: User, minutes: int) -> None:
    Session.objects.filter(user=user).update(created_at=timezone.now() - timedelta(minutes=minutes))


def _deleted_user(days_ago: int) -> User:
    user = UserFactory(phone="+4915112345678")
    session_start(user=user, device=dict(DEVICE), ip="203.0.113.9", user_agent="app/1.0", trust_device=True)
    user.is_active = False
    user.deletion_requested_at = timezone.now() - timedelta(days=days_ago)
    user.save()
    return user


# --- DELETE me -------------------------------------------------------------------


def test_delete_me_with_password_deactivates_and_revokes_every_session(client_for):
    user = UserFactory()
    client = client_for(user)
    other = session_start(user=user, device=dict(DEVICE), ip=None, user_agent=None, trust_device=True)

    response = client.delete(ME, {"password": DEFAULT_PASSWORD}, format="json")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "deactivated"
    user.refresh_from_db()
    assert user.is_active is False
    assert user.deletion_requested_at is not None
    grace = timedelta(days=django_settings.ACCOUNT_DELETION_GRACE_DAYS)
    assert body["erase_after"] == (user.deletion_requested_at + grace).isoformat().replace("+00:00", "Z")
    assert not Session.objects.filter(user=user, revoked_at__isnull=True).exists()
    assert set(Session.objects.filter(user=user).values_list("revoke_reason", flat=True)) == {
        "account_deleted"
    }
    # Both sessions' access tokens stop working at once.
    assert client.get(ME).status_code == 401
    other_client = type(client)()
    other_client.credentials(HTTP_AUTHORIZATION=f"Bearer {other.access}")
    assert other_client.get(ME).status_code == 401
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.ACCOUNT_DEACTIVATED)
    assert event.target_id == user.pk


def test_login_after_delete_me_is_invalid_credentials(client_for):
    user = UserFactory()
    assert client_for(user).delete(ME, {"password": DEFAULT_PASSWORD}, format="json").status_code == 202

    with pytest.raises(InvalidCredentials):
        login_with_password(
            email=user.email,
            password=DEFAULT_PASSWORD,
            device=dict(DEVICE),
            otp=None,
            ip=None,
            user_agent=None,
        )


def test_delete_me_with_wrong_password_changes_nothing(client_for):
    user = UserFactory()
    client = client_for(user)

    response = client.delete(ME, {"password": "not the password"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "password" in response.json()["errors"]
    user.refresh_from_db()
    assert user.is_active is True
    assert user.deletion_requested_at is None
    assert Session.objects.filter(user=user, revoked_at__isnull=True).count() == 1
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.LOGIN_FAILED, target=user).count() == 1


def test_delete_me_password_guessing_is_throttled(client_for, monkeypatch):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    for rates in (api_settings.DEFAULT_THROTTLE_RATES, SimpleRateThrottle.THROTTLE_RATES):
        monkeypatch.setitem(rates, "auth_login", "2/min")
    user = UserFactory()
    client = client_for(user)

    codes = [client.delete(ME, {"password": f"guess {i}"}, format="json").status_code for i in range(3)]

    assert codes == [400, 400, 429]
    user.refresh_from_db()
    assert user.is_active is True


def test_delete_me_without_password_after_a_recent_sign_in(client_for):
    user = UserFactory()
    client = client_for(user)  # the session was opened just now

    assert client.delete(ME, format="json").status_code == 202
    user.refresh_from_db()
    assert user.is_active is False


def test_delete_me_without_password_needs_a_recent_sign_in(client_for):
    user = UserFactory()
    client = client_for(user)
    _age_session(user, minutes=6)

    response = client.delete(ME, {}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "reauthentication_required"
    user.refresh_from_db()
    assert user.is_active is True


@pytest.mark.parametrize("body", [{"password": 123}, {"password": DEFAULT_PASSWORD, "confirm": True}])
def test_delete_me_rejects_bad_bodies(client_for, body):
    user = UserFactory()

    response = client_for(user).delete(ME, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    user.refresh_from_db()
    assert user.is_active is True


def test_delete_me_requires_authentication(api_client):
    assert api_client.delete(ME, {"password": DEFAULT_PASSWORD}, format="json").status_code == 401


# --- Erasure ---------------------------------------------------------------------


def test_beat_schedule_declares_the_erasure_job():
    tasks = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert "apps.accounts.tasks.accounts_erase_due" in tasks
    assert "apps.accounts.tasks.data_exports_purge_expired" in tasks


def test_erasure_removes_the_account_after_the_grace_period(django_capture_on_commit_callbacks):
    user = _deleted_user(days_ago=31)
    user_id = user.pk
    export = DataExport.objects.create(user=user, status="ready", file_name="accounts/exports/x/old.json")
    default_storage.save(export.file_name, ContentFile(b"{}"))
    TotpDevice.objects.create(user=user, secret="JBSWY3DPEHPK3PXP", confirmed_at=timezone.now())
    about = AuditEvent.objects.create(
        kind=AuditEvent.Kind.LOGIN_SUCCEEDED,
        actor=user,
        target=user,
        ip="203.0.113.9",
        data={"via": "password", "device_name": "Ada's phone"},
    )
    kept = UserFactory()

    with django_capture_on_commit_callbacks(execute=True):
        assert accounts_erase_due() == 1

    assert not User.objects.filter(pk=user_id).exists()
    assert not Session.objects.filter(user_id=user_id).exists()
    assert not Device.objects.filter(user_id=user_id).exists()
    assert not DataExport.objects.filter(user_id=user_id).exists()
    assert not default_storage.exists(export.file_name)
    about.refresh_from_db()
    assert about.actor_id is None and about.target_id is None
    assert about.ip is None
    subject = pseudonym_for(kind="user", value=str(user_id))
    assert about.data == {"via": "password", "subject": subject}
    erased = AuditEvent.objects.get(kind=AuditEvent.Kind.ACCOUNT_ERASED)
    assert erased.data["subject"] == subject
    assert erased.target_id is None
    assert User.objects.filter(pk=kept.pk).exists()


def test_no_audit_row_keeps_personal_data_of_an_erased_user():
    user = _deleted_user(days_ago=40)
    email, user_id = user.email, str(user.pk)

    assert account_erase(user_id=user_id) is True

    for event in AuditEvent.objects.all():
        text = f"{event.data} {event.ip} {event.actor_id} {event.target_id}"
        assert email not in text
        assert email.split("@")[0] not in text
        assert user_id not in text
        assert "203.0.113" not in text


def test_erasure_waits_for_the_grace_period():
    user = _deleted_user(days_ago=29)

    assert accounts_erase_due() == 0
    assert account_erase(user_id=str(user.pk)) is False
    assert User.objects.filter(pk=user.pk).exists()


def test_erasure_skips_an_account_that_was_reactivated():
    user = _deleted_user(days_ago=31)
    User.objects.filter(pk=user.pk).update(is_active=True)

    assert account_erase(user_id=str(user.pk)) is False
    assert User.objects.filter(pk=user.pk).exists()


def test_erasure_leaves_accounts_deactivated_by_staff_alone():
    user = UserFactory()
    User.objects.filter(pk=user.pk).update(is_active=False)

    assert accounts_erase_due() == 0
    assert User.objects.filter(pk=user.pk).exists()


def test_erasure_is_idempotent():
    user = _deleted_user(days_ago=31)

    assert account_erase(user_id=str(user.pk)) is True
    assert account_erase(user_id=str(user.pk)) is False
    assert accounts_erase_due() == 0
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.ACCOUNT_ERASED).count() == 1


def test_registered_erasers_run_before_the_row_goes(settings):
    settings.KEEL_ACCOUNT_ERASERS = [*settings.KEEL_ACCOUNT_ERASERS, f"{__name__}.recording_eraser"]
    ERASED_BY_TEST_ERASER.clear()
    user = _deleted_user(days_ago=31)

    assert account_erase(user_id=str(user.pk)) is True

    assert ERASED_BY_TEST_ERASER == [str(user.pk)]


def test_a_failing_eraser_rolls_back_and_the_next_run_retries(settings):
    user = _deleted_user(days_ago=31)
    event = AuditEvent.objects.create(kind=AuditEvent.Kind.LOGIN_SUCCEEDED, target=user, ip="203.0.113.9")
    settings.KEEL_ACCOUNT_ERASERS = [*settings.KEEL_ACCOUNT_ERASERS, f"{__name__}.broken_eraser"]

    with pytest.raises(RuntimeError):
        account_erase(user_id=str(user.pk))

    assert User.objects.filter(pk=user.pk).exists()
    event.refresh_from_db()
    assert event.ip == "203.0.113.9"  # the accounts eraser's work was rolled back too

    settings.KEEL_ACCOUNT_ERASERS = settings.KEEL_ACCOUNT_ERASERS[:-1]
    assert account_erase(user_id=str(user.pk)) is True
    assert not User.objects.filter(pk=user.pk).exists()
