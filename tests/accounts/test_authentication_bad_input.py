"""Every endpoint of auth/: bodies that are not objects, unknown fields, wrong types -> 400, never 500."""

from __future__ import annotations

import pytest

from apps.accounts.models import AuditEvent, Session
from tests.accounts.auth_helpers import DEVICE_A
from tests.factories import UserFactory

CHALLENGE = "00000000-0000-0000-0000-000000000001"

PUBLIC_POSTS = [
    "auth/register",
    "auth/email/verify",
    "auth/login",
    "auth/login/mfa",
    f"auth/device-challenges/{CHALLENGE}/verify",
    f"auth/device-challenges/{CHALLENGE}/poll",
    "auth/token/refresh",
    "auth/logout",
    "auth/password/reset",
    "auth/password/reset/confirm",
]
SIGNED_IN_POSTS = [
    "auth/email/verify/resend",
    f"auth/device-challenges/{CHALLENGE}/approve",
    "auth/password/change",
    "auth/mfa/totp",
    "auth/mfa/totp/confirm",
]


@pytest.fixture
def access(auth_api, db):
    UserFactory(email="member@example.com")
    return auth_api.signed_in("member@example.com", device=DEVICE_A)["access"]


@pytest.mark.parametrize("path", PUBLIC_POSTS + SIGNED_IN_POSTS)
@pytest.mark.parametrize("raw", ["[]", '["a"]', '"text"', "42", "null", "true", '{"unexpected": "field"}'])
def test_bodies_that_are_not_the_expected_object_are_400(access, path, raw):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    sessions_before = Session.objects.count()

    response = client.post(f"/api/v1/{path}", data=raw, content_type="application/json")

    assert response.status_code == 400, (path, raw, response.content)
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert Session.objects.count() == sessions_before


def test_delete_totp_with_a_list_body_is_400(auth_api, access):
    response = auth_api.delete("auth/mfa/totp", ["code"], token=access)

    assert response.status_code == 400


@pytest.mark.parametrize("path", PUBLIC_POSTS)
def test_public_endpoints_answer_problem_json_to_form_posts_too(auth_api, access, path):
    from rest_framework.test import APIClient

    response = APIClient().post(f"/api/v1/{path}", {"unexpected": "field"})

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("path", SIGNED_IN_POSTS + ["auth/sessions", "auth/device-challenges"])
def test_signed_in_endpoints_need_a_token(auth_api, access, path):
    method = "get" if path in ("auth/sessions", "auth/device-challenges") else "post"

    response = auth_api.call(method, path, {})

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("method", ["get", "put", "patch"])
def test_wrong_methods_are_405(auth_api, access, method):
    response = auth_api.call(method, "auth/login", {})

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_the_trailing_slash_form_works_too(auth_api, access):
    response = auth_api.post(
        "auth/login/", {"email": "member@example.com", "password": "wrong", "device": DEVICE_A}
    )

    assert response.status_code == 401
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.LOGIN_FAILED).exists()
