"""ADMIN_REQUIRE_MFA: staff sign in to the admin with their password and then their authenticator."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest
from django.conf import settings
from django.test import Client, override_settings

from apps.accounts.models import AuditEvent, TotpDevice
from apps.accounts.services.mfa import totp_setup_begin, totp_setup_confirm
from tests.factories import DEFAULT_PASSWORD, UserFactory

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff(db: None) -> Any:
    return UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)


def enrol(user: Any) -> tuple[pyotp.TOTP, list[str]]:
    setup = totp_setup_begin(user=user)
    totp = pyotp.TOTP(setup.secret)
    return totp, totp_setup_confirm(user=user, code=totp.now())


def next_code(totp: pyotp.TOTP) -> str:
    return totp.at(int(time.time()) + 30)


def password_step(browser: Client, email: str, password: str = DEFAULT_PASSWORD) -> Any:
    return browser.post(LOGIN, {"username": email, "password": password})


def admin_is_open(browser: Client) -> bool:
    response = browser.get("/admin/")
    return response.status_code == 200


# --- Staff with an authenticator ------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("required", [True, False])
def test_staff_with_totp_enter_a_code_after_the_password(staff, required):
    totp, _codes = enrol(staff)
    browser = Client()
    with override_settings(ADMIN_REQUIRE_MFA=required):
        after_password = password_step(browser, staff.email)

        assert after_password.status_code == 302
        assert after_password["Location"] == "/admin/login/verify/"
        assert not admin_is_open(browser)
        assert "_auth_user_id" not in browser.session

        page = browser.get("/admin/login/verify/")
        assert page.status_code == 200
        assert 'autocomplete="one-time-code"' in page.content.decode()

        wrong = browser.post(
            "/admin/login/verify/", {"code": "000000" if next_code(totp) != "000000" else "1"}
        )
        assert wrong.status_code == 401
        assert not admin_is_open(browser)

        right = browser.post("/admin/login/verify/", {"code": next_code(totp)})
        assert right.status_code == 302
        assert right["Location"] == "/admin/"
        assert admin_is_open(browser)
    assert AuditEvent.objects.filter(
        kind=AuditEvent.Kind.LOGIN_SUCCEEDED, target=staff, data__via="admin", data__mfa=True
    ).exists()
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.MFA_FAILED, target=staff).exists()


@pytest.mark.django_db
def test_a_recovery_code_works_once_in_the_admin(staff):
    _totp, codes = enrol(staff)
    first, second = Client(), Client()
    password_step(first, staff.email)
    password_step(second, staff.email)

    assert first.post("/admin/login/verify/", {"code": codes[0]}).status_code == 302
    assert second.post("/admin/login/verify/", {"code": codes[0]}).status_code == 401


@pytest.mark.django_db
def test_too_many_wrong_codes_restart_the_sign_in(staff):
    totp, _codes = enrol(staff)
    browser = Client()
    password_step(browser, staff.email)
    for _ in range(5):
        browser.post("/admin/login/verify/", {"code": "999999" if next_code(totp) != "999999" else "1"})

    response = browser.post("/admin/login/verify/", {"code": next_code(totp)})

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/"
    assert not admin_is_open(browser)


@pytest.mark.django_db
def test_the_password_step_expires(staff, monkeypatch):
    totp, _codes = enrol(staff)
    browser = Client()
    password_step(browser, staff.email)
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 301)

    response = browser.post("/admin/login/verify/", {"code": next_code(totp)})

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/"


@pytest.mark.django_db
def test_code_page_without_a_password_step_goes_to_the_login(client):
    response = client.post("/admin/login/verify/", {"code": "123456"})

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/"


# --- Staff without an authenticator ----------------------------------------------


@pytest.mark.django_db
@override_settings(ADMIN_REQUIRE_MFA=True)
def test_required_mfa_takes_staff_without_totp_to_enrolment(staff):
    browser = Client()

    after_password = password_step(browser, staff.email)

    assert after_password.status_code == 302
    assert after_password["Location"] == "/admin/login/authenticator/"
    assert not admin_is_open(browser)
    page = browser.get("/admin/login/authenticator/")
    html = page.content.decode()
    assert page.status_code == 200
    secret = re.search(r"<code[^>]*>([A-Z2-7]+)</code>", html).group(1)
    assert "otpauth://totp/" in html

    wrong = browser.post("/admin/login/authenticator/", {"code": "000000"})
    assert wrong.status_code == 401
    assert secret in wrong.content.decode()  # the same key, to try again
    assert not admin_is_open(browser)

    done = browser.post("/admin/login/authenticator/", {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    codes = re.findall(r"<li>([a-z0-9]{5}-[a-z0-9]{5})</li>", done.content.decode())
    assert len(codes) == 10
    assert TotpDevice.objects.get(user=staff).confirmed_at is not None
    assert admin_is_open(browser)


@pytest.mark.django_db
@override_settings(ADMIN_REQUIRE_MFA=True)
def test_required_mfa_refuses_a_session_that_skipped_the_second_factor(staff):
    browser = Client()
    browser.force_login(staff)

    response = browser.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
@override_settings(ADMIN_REQUIRE_MFA=False)
def test_without_the_requirement_staff_without_totp_sign_in_with_the_password(staff):
    browser = Client()

    response = password_step(browser, staff.email)

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert admin_is_open(browser)


def test_requirement_is_on_by_default_outside_local_and_test_settings():
    import subprocess
    import sys

    probe = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings.base'; "
        "from django.conf import settings; print(settings.ADMIN_REQUIRE_MFA)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "ADMIN_REQUIRE_MFA"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )

    assert result.stdout.strip() == "True"
    assert settings.ADMIN_REQUIRE_MFA is False  # the test settings switch it off


# --- The password step ---------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_passwords_lock_the_staff_account(staff):
    browser = Client()
    for _ in range(settings.ACCOUNT_LOCKOUT_THRESHOLD):
        assert password_step(browser, staff.email, "wrong password").status_code == 200

    response = password_step(browser, staff.email)

    assert response.status_code == 200
    assert "Too many failed sign-ins" in response.content.decode()
    assert not admin_is_open(browser)
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.ACCOUNT_LOCKED, target=staff).exists()


@pytest.mark.django_db
def test_non_staff_cannot_sign_in_to_the_admin(db):
    member = UserFactory(email="member@example.com")
    browser = Client()

    response = password_step(browser, member.email)

    assert response.status_code == 200
    assert not admin_is_open(browser)
    assert "_auth_user_id" not in browser.session


@pytest.mark.django_db
def test_admin_login_is_throttled_per_ip(staff, monkeypatch):
    from tests.accounts.auth_helpers import set_throttle_rate

    set_throttle_rate(monkeypatch, "auth_login", "2/min")
    browser = Client()
    password_step(browser, staff.email, "wrong")
    password_step(browser, staff.email, "wrong")

    response = password_step(browser, staff.email)

    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert not admin_is_open(browser)
