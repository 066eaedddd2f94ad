"""The accounts admin through the test client: lists, search, filters and audited staff actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from apps.accounts.models import AuditEvent, DataExport, RecoveryCode, Session, TotpDevice, User
from apps.accounts.services.sessions import session_start
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

USERS = "/admin/accounts/user/"
SESSIONS = "/admin/accounts/session/"
DEVICES = "/admin/accounts/device/"
AUDIT = "/admin/accounts/auditevent/"
EXPORTS = "/admin/accounts/dataexport/"
DEVICE = {"device_id": "install-1", "name": "Pixel 9", "platform": "android"}


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser(email="boss@example.com", password="x" * 16)


@pytest.fixture
def admin_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def _staff_in(role: str) -> Client:
    member = UserFactory(is_staff=True)
    member.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(member)
    return client


def _signed_in(user: User, count: int = 2) -> list[str]:
    return [
        session_start(
            user=user,
            device={**DEVICE, "device_id": f"install-{i}"},
            ip="203.0.113.7",
            user_agent="app",
            trust_device=True,
        ).session_id
        for i in range(count)
    ]


def _action(client: Client, url: str, action: str, ids: list[object]) -> object:
    return client.post(url, {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True)


def _staff_events(action: str) -> list[AuditEvent]:
    return [
        e for e in AuditEvent.objects.filter(kind=AuditEvent.Kind.STAFF_ACTION) if e.data["action"] == action
    ]


def test_user_list_and_detail_render(admin_client):
    user = UserFactory(phone="+4915112345678")
    _signed_in(user)

    listing = admin_client.get(USERS)
    detail = admin_client.get(f"{USERS}{user.pk}/change/")

    assert listing.status_code == 200
    assert user.email in listing.content.decode()
    assert detail.status_code == 200
    assert "+4915112345678" in detail.content.decode()


def test_user_list_query_count_does_not_grow_with_users(admin_client, django_assert_max_num_queries):
    for _ in range(15):
        user = UserFactory()
        TotpDevice.objects.create(user=user, secret="JBSWY3DPEHPK3PXP", confirmed_at=timezone.now())

    with django_assert_max_num_queries(12):
        assert admin_client.get(USERS).status_code == 200


@pytest.mark.parametrize("term", ["findme@example", "+49 151 1234 5678", "id"])
def test_user_search_by_email_phone_and_id(admin_client, term):
    target = UserFactory(email="findme@example.com", phone="+4915112345678")
    other = UserFactory(email="other@example.com")
    query = str(target.pk) if term == "id" else term

    response = admin_client.get(USERS, {"q": query})

    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert target in shown
    assert other not in shown


def test_user_search_with_free_text_does_not_fail(admin_client):
    assert admin_client.get(USERS, {"q": "not-an-id at all"}).status_code == 200


def test_user_filters(admin_client):
    with_mfa = UserFactory()
    TotpDevice.objects.create(user=with_mfa, secret="JBSWY3DPEHPK3PXP", confirmed_at=timezone.now())
    leaving = UserFactory(is_active=False, deletion_requested_at=timezone.now())
    plain = UserFactory()

    mfa = list(admin_client.get(USERS, {"mfa": "on"}).context["cl"].result_list)
    deletion = list(admin_client.get(USERS, {"deletion": "requested"}).context["cl"].result_list)

    assert mfa == [with_mfa]
    assert deletion == [leaving]
    assert plain not in mfa + deletion


def test_force_logout_action_revokes_sessions_and_audits_the_staff_actor(admin_client, superuser):
    user = UserFactory()
    session_ids = _signed_in(user)

    response = _action(admin_client, USERS, "force_logout", [user.pk])

    assert response.status_code == 200
    assert not Session.objects.filter(pk__in=session_ids, revoked_at__isnull=True).exists()
    [event] = _staff_events("force_logout")
    assert event.actor_id == superuser.pk
    assert event.target_id == user.pk
    assert event.data["sessions_revoked"] == 2


def test_deactivate_action(admin_client, superuser):
    user = UserFactory()
    _signed_in(user)

    _action(admin_client, USERS, "deactivate", [user.pk])

    user.refresh_from_db()
    assert user.is_active is False
    assert user.deletion_requested_at is None  # staff deactivation schedules no erasure
    assert not Session.objects.filter(user=user, revoked_at__isnull=True).exists()
    [event] = _staff_events("deactivate")
    assert (event.actor_id, event.target_id) == (superuser.pk, user.pk)


def test_staff_cannot_deactivate_themselves(admin_client, superuser):
    _action(admin_client, USERS, "deactivate", [superuser.pk])

    superuser.refresh_from_db()
    assert superuser.is_active is True
    assert _staff_events("deactivate") == []


def test_reactivate_action_cancels_a_pending_deletion(admin_client, superuser):
    user = UserFactory(is_active=False, deletion_requested_at=timezone.now())

    _action(admin_client, USERS, "reactivate", [user.pk])

    user.refresh_from_db()
    assert user.is_active is True
    assert user.deletion_requested_at is None
    [event] = _staff_events("reactivate")
    assert event.data["deletion_cancelled"] is True


def test_reset_mfa_action(admin_client, superuser):
    user = UserFactory()
    TotpDevice.objects.create(user=user, secret="JBSWY3DPEHPK3PXP", confirmed_at=timezone.now())
    RecoveryCode.objects.create(user=user, code_hash="a" * 64)

    _action(admin_client, USERS, "reset_mfa", [user.pk])

    assert not TotpDevice.objects.filter(user=user).exists()
    assert not RecoveryCode.objects.filter(user=user).exists()
    [event] = _staff_events("reset_mfa")
    assert (event.actor_id, event.target_id, event.data["had_mfa"]) == (superuser.pk, user.pk, True)
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.MFA_DISABLED, target=user, actor=superuser).exists()


def test_session_list_filter_and_revoke_action(admin_client, superuser):
    user = UserFactory()
    first, second = _signed_in(user)

    listing = admin_client.get(SESSIONS, {"state": "active"})
    assert listing.status_code == 200
    assert {str(s.pk) for s in listing.context["cl"].result_list} == {first, second}

    _action(admin_client, SESSIONS, "revoke", [first])

    assert Session.objects.get(pk=first).revoked_at is not None
    assert Session.objects.get(pk=second).revoked_at is None
    [event] = _staff_events("revoke_session")
    assert (event.actor_id, event.target_id, event.data["session_id"]) == (superuser.pk, user.pk, first)
    revoked = admin_client.get(SESSIONS, {"state": "revoked"}).context["cl"].result_list
    assert [str(s.pk) for s in revoked] == [first]


def test_sessions_devices_exports_and_audit_log_are_read_only(admin_client):
    user = UserFactory()
    [session_id] = _signed_in(user, count=1)
    device = Session.objects.get(pk=session_id).device
    export = DataExport.objects.create(user=user, status="ready", file_name="accounts/exports/x.json")
    event = AuditEvent.objects.first()

    for url in (SESSIONS, DEVICES, EXPORTS, AUDIT):
        assert admin_client.get(url).status_code == 200
        assert admin_client.get(f"{url}add/").status_code == 403
    for url, pk in ((SESSIONS, session_id), (DEVICES, device.pk), (EXPORTS, export.pk), (AUDIT, event.pk)):
        page = admin_client.get(f"{url}{pk}/change/")
        assert page.status_code == 200
        assert b'name="_save"' not in page.content
        assert admin_client.post(f"{url}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert b"accounts/exports/x.json" not in admin_client.get(f"{EXPORTS}{export.pk}/change/").content


def test_device_list_filter_trusted(admin_client):
    user = UserFactory()
    _signed_in(user, count=1)

    trusted = admin_client.get(DEVICES, {"trusted": "yes"}).context["cl"].result_list
    untrusted = admin_client.get(DEVICES, {"trusted": "no"}).context["cl"].result_list

    assert len(trusted) == 1
    assert len(untrusted) == 0


def test_audit_log_filters_by_kind_and_target(admin_client, superuser):
    user = UserFactory()
    _signed_in(user)
    _action(admin_client, USERS, "force_logout", [user.pk])

    staff_only = admin_client.get(AUDIT, {"kind__exact": "staff_action"}).context["cl"].result_list
    about_user = admin_client.get(AUDIT, {"target__id__exact": str(user.pk)}).context["cl"].result_list

    assert [e.kind for e in staff_only] == ["staff_action"]
    assert {"staff_action", "session_revoked"} <= {e.kind for e in about_user}
    assert {e.target_id for e in about_user} == {user.pk}


def test_support_can_look_up_and_sign_out_but_not_change_users():
    client = _staff_in("support")
    user = UserFactory()
    _signed_in(user)

    assert client.get(USERS).status_code == 200
    assert client.get(SESSIONS).status_code == 200
    assert client.get(DEVICES).status_code == 200
    assert client.get(AUDIT).status_code == 200
    detail = client.get(f"{USERS}{user.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    actions = dict(client.get(USERS).context["action_form"].fields["action"].choices)
    assert "force_logout" in actions
    assert "deactivate" not in actions and "reset_mfa" not in actions

    _action(client, USERS, "force_logout", [user.pk])
    assert not Session.objects.filter(user=user, revoked_at__isnull=True).exists()

    _action(client, USERS, "deactivate", [user.pk])
    user.refresh_from_db()
    assert user.is_active is True


def test_finance_can_only_view_users():
    client = _staff_in("finance")
    user = UserFactory()
    _signed_in(user)

    assert client.get(USERS).status_code == 200
    assert client.get(SESSIONS).status_code == 403
    assert client.get(AUDIT).status_code == 403
    assert client.get(USERS).context["action_form"] is None  # no action is offered

    _action(client, USERS, "force_logout", [user.pk])
    assert Session.objects.filter(user=user, revoked_at__isnull=True).count() == 2


def test_staff_action_requires_staff(client_for):
    user = UserFactory()
    _signed_in(user)
    outsider = Client()
    outsider.force_login(UserFactory())

    response = _action(outsider, USERS, "force_logout", [user.pk])

    assert "/admin/login/" in response.redirect_chain[-1][0]
    assert Session.objects.filter(user=user, revoked_at__isnull=True).count() == 2


def test_staff_creates_a_user_in_the_admin(admin_client):
    password = "lantern-orbit-meadow-42"
    response = admin_client.post(
        f"{USERS}add/",
        {"email": "new@example.com", "password1": password, "password2": password, "usable_password": "true"},
    )

    assert response.status_code == 302
    created = User.objects.get(email="new@example.com")
    assert created.check_password(password)


def test_change_form_keeps_the_encrypted_phone(admin_client):
    user = UserFactory(phone="+4915112345678", display_name="Before")
    page = admin_client.get(f"{USERS}{user.pk}/change/")
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data.update(
        display_name="After",
        groups=[],
        user_permissions=[],
        is_active="on",
        email_verified="on",
        created_at_0=user.created_at.strftime("%Y-%m-%d"),
        created_at_1=user.created_at.strftime("%H:%M:%S"),
    )
    data = {k: v for k, v in data.items() if v is not False}

    response = admin_client.post(f"{USERS}{user.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.display_name == "After"
    assert user.phone == "+4915112345678"
