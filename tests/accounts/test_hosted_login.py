"""The hosted login page of the OAuth flow: validation, CSRF, MFA and step-up on the page."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import pyotp
import pytest
from django.conf import settings
from django.test import Client

from apps.accounts.models import Device, DeviceChallenge, OAuthAuthorization, Session
from apps.accounts.services.mfa import totp_setup_begin, totp_setup_confirm
from apps.accounts.services.sessions import session_start
from tests.accounts.auth_helpers import last_code_for, set_throttle_rate
from tests.accounts.oauth_helpers import REDIRECT_URI, HostedFlow, make_client
from tests.factories import DEFAULT_PASSWORD, UserFactory


@pytest.fixture
def app_client(db: None) -> Any:
    return make_client()


@pytest.fixture
def flow(app_client: Any, django_capture_on_commit_callbacks: Any) -> HostedFlow:
    return HostedFlow(capture=django_capture_on_commit_callbacks, client_id=app_client.client_id)


@pytest.fixture
def person(db: None) -> Any:
    return UserFactory(email="ada@example.com")


def with_mfa(user: Any) -> pyotp.TOTP:
    setup = totp_setup_begin(user=user)
    totp = pyotp.TOTP(setup.secret)
    totp_setup_confirm(user=user, code=totp.now())
    return totp


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next time step (the current one was burnt by the confirmation)."""
    return totp.at(int(time.time()) + 30)


def with_trusted_phone(user: Any) -> str:
    tokens = session_start(
        user=user,
        device={"device_id": "phone-a", "name": "iPhone", "platform": "ios"},
        ip=None,
        user_agent=None,
        trust_device=True,
    )
    return tokens.access


def text(response: Any) -> str:
    return response.content.decode()


# --- The authorization request ----------------------------------------------


@pytest.mark.django_db
def test_page_is_a_plain_mobile_friendly_form_without_external_assets(flow):
    page = flow.open()

    html = text(page)
    assert page.status_code == 200
    assert 'name="viewport"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "<script" not in html
    assert "http://" not in html.replace('action="/api/v1/auth/authorize"', "")
    assert "https://" not in html
    assert "default-src 'none'" in page["Content-Security-Policy"]
    assert "com.example.app:" in page["Content-Security-Policy"]  # the redirect after the form post
    assert page["Cache-Control"] == "no-store"
    assert page["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_login_hint_prefills_the_email(flow):
    page = flow.open(login_hint="ada@example.com")

    assert 'value="ada@example.com"' in text(page)


@pytest.mark.django_db
def test_unknown_client_shows_an_error_and_does_not_redirect(flow):
    page = flow.open(client_id="no-such-client")

    assert page.status_code == 400
    assert "Location" not in page
    assert "cannot be used" in text(page)


@pytest.mark.django_db
def test_unregistered_redirect_uri_shows_an_error_and_does_not_redirect(flow):
    page = flow.open(redirect_uri="com.evil.app:/steal")

    assert page.status_code == 400
    assert "Location" not in page


@pytest.mark.django_db
def test_plain_pkce_method_is_refused_back_to_the_app(flow):
    response = flow.open(code_challenge_method="plain", code_challenge="a" * 43)

    callback = flow.callback(response)
    assert response["Location"].startswith(REDIRECT_URI)
    assert callback["error"] == "invalid_request"
    assert callback["state"] == flow.state
    assert callback["iss"] == settings.OIDC_ISSUER


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": None},
        {"code_challenge": "too-short"},
    ],
)
def test_pkce_is_required(flow, overrides):
    callback = flow.callback(flow.open(**overrides))

    assert callback["error"] == "invalid_request"


@pytest.mark.django_db
def test_other_response_types_are_refused(flow):
    callback = flow.callback(flow.open(response_type="token"))

    assert callback["error"] in ("unsupported_response_type", "unauthorized_client")
    assert not OAuthAuthorization.objects.exists()


@pytest.mark.django_db
def test_unknown_scope_is_refused(flow):
    assert flow.callback(flow.open(scope="openid admin"))["error"] == "invalid_scope"


@pytest.mark.django_db
def test_repeated_parameter_is_an_error_page(flow, app_client):
    query = urlencode(flow.params()) + f"&client_id={app_client.client_id}"

    response = Client().get(f"/api/v1/auth/authorize?{query}")

    assert response.status_code == 400
    assert "Location" not in response


# --- Signing in on the page ---------------------------------------------------


@pytest.mark.django_db
def test_form_without_csrf_token_is_refused(flow, person):
    flow.open()

    response = flow.submit("password", csrf=False, email=person.email, password=DEFAULT_PASSWORD)

    assert response.status_code == 403
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_form_posted_from_another_browser_is_refused(flow, person):
    flow.open()
    flow.browser = Client(enforce_csrf_checks=True)  # no cookies: another browser, a forged post

    response = flow.submit("password", email=person.email, password=DEFAULT_PASSWORD)

    assert response.status_code == 403
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_wrong_password_stays_on_the_page(flow, person):
    flow.open()

    response = flow.sign_in(person.email, "wrong password")

    assert response.status_code == 401
    assert "email address or password is wrong" in text(response)
    assert 'value="ada@example.com"' in text(response)
    assert not Session.objects.exists()
    # The same flow goes on with the right password.
    assert flow.callback(flow.sign_in(person.email, DEFAULT_PASSWORD))["code"]


@pytest.mark.django_db
def test_unknown_email_answers_like_a_wrong_password(flow):
    flow.open()

    response = flow.sign_in("nobody@example.com", "whatever password")

    assert response.status_code == 401
    assert "email address or password is wrong" in text(response)


@pytest.mark.django_db
def test_repeated_failures_lock_the_account_on_the_page_too(flow, person):
    flow.open()
    for _ in range(settings.ACCOUNT_LOCKOUT_THRESHOLD - 1):
        assert flow.sign_in(person.email, "wrong password").status_code == 401

    locked = flow.sign_in(person.email, "wrong password")
    after = flow.sign_in(person.email, DEFAULT_PASSWORD)

    assert locked.status_code == 423
    assert after.status_code == 423
    assert "Too many failed sign-ins" in text(after)


@pytest.mark.django_db
def test_login_throttle_applies_to_the_page(flow, person, monkeypatch):
    set_throttle_rate(monkeypatch, "auth_login", "2/min")
    flow.open()
    flow.sign_in(person.email, "wrong one")
    flow.sign_in(person.email, "wrong two")

    response = flow.sign_in(person.email, DEFAULT_PASSWORD)

    assert response.status_code == 429
    assert response["Retry-After"]
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_cancel_goes_back_to_the_app_with_access_denied(flow):
    flow.open()

    callback = flow.callback(flow.submit("cancel"))

    assert callback["error"] == "access_denied"
    assert callback["state"] == flow.state


@pytest.mark.django_db
def test_expired_flow_cannot_be_completed(flow, person, monkeypatch):
    flow.open()
    monkeypatch.setattr(
        time, "time", lambda real=time.time: real() + settings.OAUTH_HOSTED_FLOW_TTL_SECONDS + 1
    )

    response = flow.sign_in(person.email, DEFAULT_PASSWORD)

    assert response.status_code == 400
    assert "expired" in text(response)
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_app_install_given_as_device_parameters_becomes_the_session_device(flow, person):
    flow.open(device_id="install-42", device_name="Ada's iPhone", platform="ios")

    code = flow.callback(flow.sign_in(person.email, DEFAULT_PASSWORD))["code"]
    assert flow.token(code).status_code == 200

    device = Session.objects.get(user=person).device
    assert (device.device_id, device.name, device.platform) == ("install-42", "Ada's iPhone", "ios")


@pytest.mark.django_db
def test_browser_is_the_device_when_the_app_names_none(flow, person, django_capture_on_commit_callbacks):
    flow.open()
    cookie = flow.browser.cookies["keel_device"]
    assert cookie["httponly"]
    flow.callback(flow.sign_in(person.email, DEFAULT_PASSWORD))

    second = HostedFlow(
        capture=django_capture_on_commit_callbacks, client_id=flow.client_id, browser=flow.browser
    )
    second.open()
    second.callback(second.sign_in(person.email, DEFAULT_PASSWORD))

    devices = Device.objects.filter(user=person)
    assert devices.count() == 1
    assert devices.get().device_id == f"browser:{cookie.value}"
    assert Session.objects.filter(user=person).count() == 2


# --- MFA on the page ----------------------------------------------------------


@pytest.mark.django_db
def test_mfa_is_asked_on_the_page(flow, person):
    totp = with_mfa(person)
    flow.open()

    mfa_page = flow.sign_in(person.email, DEFAULT_PASSWORD)
    assert mfa_page.status_code == 200
    assert 'autocomplete="one-time-code"' in text(mfa_page)
    assert not Session.objects.filter(user=person).exists()

    wrong = flow.submit("mfa", code="000000" if next_code(totp) != "000000" else "111111")
    assert wrong.status_code == 401
    assert "code is not right" in text(wrong)

    callback = flow.callback(flow.submit("mfa", code=next_code(totp)))
    tokens = flow.token(callback["code"])
    assert tokens.status_code == 200
    assert Session.objects.get(user=person).via == "oauth"


@pytest.mark.django_db
def test_mfa_step_accepts_a_recovery_code(flow, person):
    setup = totp_setup_begin(user=person)
    recovery = totp_setup_confirm(user=person, code=pyotp.TOTP(setup.secret).now())
    flow.open()
    flow.sign_in(person.email, DEFAULT_PASSWORD)

    assert flow.callback(flow.submit("mfa", code=recovery[0]))["code"]


@pytest.mark.django_db
def test_mfa_step_cannot_be_skipped_by_posting_another_action(flow, person):
    with_mfa(person)
    flow.open()
    flow.sign_in(person.email, DEFAULT_PASSWORD)

    response = flow.submit("password", email=person.email, password=DEFAULT_PASSWORD)

    assert response.status_code == 400
    assert not Session.objects.filter(user=person).exists()


# --- Step-up on the page -------------------------------------------------------


@pytest.mark.django_db
def test_new_device_step_up_with_the_emailed_code(flow, person):
    with_trusted_phone(person)
    flow.open()

    challenge_page = flow.sign_in(person.email, DEFAULT_PASSWORD)
    assert challenge_page.status_code == 200
    assert "This device is new to your account" in text(challenge_page)
    assert Session.objects.filter(user=person).count() == 1

    wrong = flow.submit("challenge", code="000000" if last_code_for(person.email) != "000000" else "111111")
    assert wrong.status_code == 401

    callback = flow.callback(flow.submit("challenge", code=last_code_for(person.email)))
    assert flow.token(callback["code"]).status_code == 200
    assert Session.objects.filter(user=person).count() == 2
    browser_device = Device.objects.get(user=person, device_id__startswith="browser:")
    assert browser_device.trusted_at is not None


@pytest.mark.django_db
def test_new_device_step_up_approved_from_the_trusted_phone(flow, person, django_capture_on_commit_callbacks):
    phone_access = with_trusted_phone(person)
    flow.open()
    flow.sign_in(person.email, DEFAULT_PASSWORD)

    pending = flow.submit("poll")
    assert pending.status_code == 202
    assert "Not approved yet" in text(pending)

    challenge = DeviceChallenge.objects.get(user=person)
    phone = Client(HTTP_AUTHORIZATION=f"Bearer {phone_access}")
    with django_capture_on_commit_callbacks(execute=True):
        assert phone.post(f"/api/v1/auth/device-challenges/{challenge.pk}/approve").status_code == 204

    callback = flow.callback(flow.submit("poll"))
    assert flow.token(callback["code"]).status_code == 200


@pytest.mark.django_db
def test_expired_challenge_sends_the_user_back_to_the_password(flow, person):
    with_trusted_phone(person)
    flow.open()
    flow.sign_in(person.email, DEFAULT_PASSWORD)
    code = last_code_for(person.email)
    from django.utils import timezone

    DeviceChallenge.objects.update(expires_at=timezone.now())

    response = flow.submit("challenge", code=code)

    assert response.status_code == 410
    assert 'autocomplete="current-password"' in text(response)
    assert Session.objects.filter(user=person).count() == 1


@pytest.mark.django_db
def test_per_ip_throttle_answers_a_page_not_a_problem_document(flow, monkeypatch):
    set_throttle_rate(monkeypatch, "auth_login", "1/min")
    flow.open()
    assert flow.sign_in("first@example.com", "wrong password").status_code == 401

    response = flow.sign_in("second@example.com", "wrong password")

    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) >= 1
