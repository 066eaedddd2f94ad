"""OAuth 2.1 authorization code + PKCE: the code exchange ends in Keel's own session tokens."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import Grant
from rest_framework.test import APIClient

from apps.accounts.models import AuditEvent, OAuthAuthorization, RefreshToken, Session
from tests.accounts.oauth_helpers import (
    REDIRECT_URI,
    WEB_REDIRECT_URI,
    HostedFlow,
    make_client,
    pkce_pair,
    token_post,
)
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


def signed_in_code(flow: HostedFlow, person: Any) -> str:
    assert flow.open().status_code == 200
    return flow.callback(flow.sign_in(person.email, DEFAULT_PASSWORD))["code"]


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def assert_oauth_error(response: Any, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert "code" not in body  # RFC 6749 form, not a problem document
    assert response["Cache-Control"] == "no-store"


# --- The whole flow ---------------------------------------------------------


@pytest.mark.django_db
def test_full_flow_ends_in_keel_tokens_that_work_everywhere(flow, person, app_client):
    page = flow.open()
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    assert "Example App" in page.content.decode()

    redirect = flow.sign_in(person.email, DEFAULT_PASSWORD)
    callback = flow.callback(redirect)
    assert redirect["Location"].startswith(f"{REDIRECT_URI}?")
    assert callback["state"] == flow.state
    assert callback["iss"] == settings.OIDC_ISSUER  # RFC 9207

    response = flow.token(callback["code"])

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 300
    sessions = bearer(body["access_token"]).get("/api/v1/auth/sessions")
    assert sessions.status_code == 200
    current = [s for s in sessions.json()["results"] if s["current"]]
    assert len(current) == 1
    session = Session.objects.get(pk=current[0]["id"])
    assert session.user == person
    assert session.via == "oauth"
    # The refresh token is a Keel refresh token: it rotates at auth/token/refresh.
    refreshed = APIClient().post(
        "/api/v1/auth/token/refresh", {"refresh": body["refresh_token"]}, format="json"
    )
    assert refreshed.status_code == 200
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.OAUTH_AUTHORIZED, target=person).count() == 2


@pytest.mark.django_db
def test_id_token_is_signed_for_the_client_and_verifiable_from_the_jwks(flow, person, app_client):
    body = flow.token(signed_in_code(flow, person), scope=None).json()
    jwks = Client().get("/.well-known/jwks.json").json()
    header = jwt.get_unverified_header(body["id_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])

    claims = jwt.decode(
        body["id_token"],
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=app_client.client_id,
        issuer=settings.OIDC_ISSUER,
    )

    assert header["alg"] == "RS256"
    assert claims["sub"] == str(person.pk)
    assert claims["email"] == person.email
    assert claims["email_verified"] is True
    assert claims["exp"] > claims["iat"]
    assert claims["sid"] == str(Session.objects.get(user=person).pk)


@pytest.mark.django_db
def test_id_token_carries_the_nonce_of_the_request(flow, person):
    flow.open(nonce="n-0S6_WzA2Mj")
    code = flow.callback(flow.sign_in(person.email, DEFAULT_PASSWORD))["code"]

    id_token = flow.token(code).json()["id_token"]

    assert jwt.decode(id_token, options={"verify_signature": False})["nonce"] == "n-0S6_WzA2Mj"


@pytest.mark.django_db
def test_token_request_as_json_works_too(flow, person):
    code = signed_in_code(flow, person)
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": flow.verifier,
        "redirect_uri": REDIRECT_URI,
        "client_id": flow.client_id,
    }

    response = Client().post("/api/v1/auth/token", json.dumps(body), content_type="application/json")

    assert response.status_code == 200, response.content
    assert response.json()["access_token"]


@pytest.mark.django_db
def test_https_redirect_uri_and_state_echo(app_client, person, django_capture_on_commit_callbacks):
    flow = HostedFlow(
        capture=django_capture_on_commit_callbacks,
        client_id=app_client.client_id,
        redirect_uri=WEB_REDIRECT_URI,
        state="opaque/state+with=chars",
    )
    flow.open()

    redirect = flow.sign_in(person.email, DEFAULT_PASSWORD)

    assert redirect["Location"].startswith(f"{WEB_REDIRECT_URI}?")
    assert flow.callback(redirect)["state"] == "opaque/state+with=chars"


@pytest.mark.django_db
def test_discovery_document_names_the_endpoints(client):
    document = client.get("/.well-known/openid-configuration").json()

    assert document["issuer"] == settings.OIDC_ISSUER
    assert document["authorization_endpoint"].endswith("/api/v1/auth/authorize")
    assert document["token_endpoint"].endswith("/api/v1/auth/token")
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["jwks_uri"].endswith("/.well-known/jwks.json")


# --- The code exchange refuses ---------------------------------------------------


@pytest.mark.django_db
def test_wrong_code_verifier_is_invalid_grant(flow, person):
    code = signed_in_code(flow, person)
    other_verifier, _ = pkce_pair()

    assert_oauth_error(flow.token(code, code_verifier=other_verifier), "invalid_grant")
    # The right verifier still works: a wrong guess does not burn the code.
    assert flow.token(code).status_code == 200


@pytest.mark.django_db
def test_missing_code_verifier_is_invalid_request(flow, person):
    assert_oauth_error(flow.token(signed_in_code(flow, person), code_verifier=None), "invalid_request")


@pytest.mark.django_db
def test_reused_code_is_refused_and_revokes_its_session(flow, person):
    code = signed_in_code(flow, person)
    first = flow.token(code)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert bearer(access).get("/api/v1/auth/sessions").status_code == 200

    second = flow.token(code)

    assert_oauth_error(second, "invalid_grant")
    session = Session.objects.get(user=person)
    assert session.revoked_at is not None
    assert session.revoke_reason == "oauth_code_reused"
    assert bearer(access).get("/api/v1/auth/sessions").status_code == 401
    refresh = APIClient().post(
        "/api/v1/auth/token/refresh", {"refresh": first.json()["refresh_token"]}, format="json"
    )
    assert refresh.status_code == 401
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.TOKEN_REUSED, target=person).exists()


@pytest.mark.django_db
def test_expired_code_is_refused_and_its_session_revoked(flow, person):
    code = signed_in_code(flow, person)
    Grant.objects.update(expires=timezone.now() - timedelta(seconds=1))

    assert_oauth_error(flow.token(code), "invalid_grant")
    session = Session.objects.get(user=person)
    assert session.revoked_at is not None
    assert session.revoke_reason == "oauth_code_expired"


@pytest.mark.django_db
def test_codes_live_sixty_seconds(flow, person):
    signed_in_code(flow, person)

    grant = Grant.objects.get()
    lifetime = (grant.expires - grant.created).total_seconds()
    assert 59 <= lifetime <= 61
    assert OAuthAuthorization.objects.get().expires_at == grant.expires


@pytest.mark.django_db
def test_redirect_uri_must_match_the_authorization_request(flow, person):
    code = signed_in_code(flow, person)

    assert_oauth_error(flow.token(code, redirect_uri=WEB_REDIRECT_URI), "invalid_request")
    assert flow.token(code).status_code == 200


@pytest.mark.django_db
def test_code_of_another_client_is_refused(flow, person):
    code = signed_in_code(flow, person)
    other = make_client(name="Other App")

    assert_oauth_error(flow.token(code, client_id=other.client_id), "invalid_grant")
    assert Session.objects.get(user=person).revoked_at is None


@pytest.mark.django_db
def test_unknown_client_at_the_token_endpoint_is_invalid_client(flow, person):
    code = signed_in_code(flow, person)

    assert_oauth_error(flow.token(code, client_id="no-such-client"), "invalid_client", status=401)


@pytest.mark.django_db
def test_garbage_code_is_invalid_grant(flow):
    assert_oauth_error(flow.token("not-a-code"), "invalid_grant")


@pytest.mark.django_db
@pytest.mark.parametrize("grant_type", ["password", "client_credentials", "implicit", "openid"])
def test_other_grant_types_are_unsupported(flow, grant_type):
    assert_oauth_error(flow.token("x", grant_type=grant_type), "unsupported_grant_type")


@pytest.mark.django_db
def test_missing_grant_type_is_invalid_request(flow):
    assert_oauth_error(flow.token("x", grant_type=None), "invalid_request")


@pytest.mark.django_db
def test_repeated_parameters_are_invalid_request(flow, person):
    code = signed_in_code(flow, person)
    body = (
        f"grant_type=authorization_code&code={code}&code={code}&code_verifier={flow.verifier}"
        f"&redirect_uri={REDIRECT_URI}&client_id={flow.client_id}"
    )

    response = Client().post("/api/v1/auth/token", body, content_type="application/x-www-form-urlencoded")

    assert_oauth_error(response, "invalid_request")


@pytest.mark.django_db
def test_malformed_json_is_invalid_request_not_a_problem_document():
    response = Client().post("/api/v1/auth/token", "{not json", content_type="application/json")

    assert_oauth_error(response, "invalid_request")


@pytest.mark.django_db
def test_wrong_json_type_is_invalid_request():
    response = Client().post(
        "/api/v1/auth/token",
        json.dumps({"grant_type": "authorization_code", "code": 12}),
        content_type="application/json",
    )

    assert_oauth_error(response, "invalid_request")


@pytest.mark.django_db
def test_confidential_client_must_authenticate(person, django_capture_on_commit_callbacks):
    secret = "s3cret-" + "x" * 40
    confidential = make_client(confidential=True, client_secret=secret)
    flow = HostedFlow(capture=django_capture_on_commit_callbacks, client_id=confidential.client_id)
    code = signed_in_code(flow, person)

    assert_oauth_error(flow.token(code), "invalid_client", status=401)
    assert_oauth_error(flow.token(code, client_secret="wrong"), "invalid_client", status=401)
    basic = base64.b64encode(f"{confidential.client_id}:{secret}".encode()).decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = token_post(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": flow.verifier,
                "redirect_uri": REDIRECT_URI,
            },
            HTTP_AUTHORIZATION=f"Basic {basic}",
        )
    assert response.status_code == 200, response.content


# --- Refresh at the token endpoint --------------------------------------------


@pytest.mark.django_db
def test_refresh_token_grant_rotates_like_auth_token_refresh(flow, person, app_client):
    tokens = flow.token(signed_in_code(flow, person)).json()
    body = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": flow.client_id,
    }

    first = token_post(body)

    assert first.status_code == 200, first.content
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert bearer(rotated["access_token"]).get("/api/v1/auth/sessions").status_code == 200
    claims = jwt.decode(rotated["id_token"], options={"verify_signature": False})
    assert claims["aud"] == app_client.client_id


@pytest.mark.django_db
def test_refresh_token_reuse_at_the_token_endpoint_revokes_the_session(flow, person):
    tokens = flow.token(signed_in_code(flow, person)).json()
    body = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": flow.client_id,
    }
    assert token_post(body).status_code == 200
    # Outside the grace window a rotated token is a replay.
    RefreshToken.objects.filter(rotated_at__isnull=False).update(
        rotated_at=timezone.now() - timedelta(seconds=settings.ACCOUNT_REFRESH_GRACE_SECONDS + 1)
    )

    with flow.capture(execute=True):
        reused = token_post(body)

    assert_oauth_error(reused, "invalid_grant")
    assert Session.objects.get(user=person).revoked_at is not None


@pytest.mark.django_db
def test_refresh_grant_needs_a_known_client(flow, person):
    tokens = flow.token(signed_in_code(flow, person)).json()

    response = token_post(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "nobody"}
    )

    assert_oauth_error(response, "invalid_client", status=401)


@pytest.mark.django_db
def test_invalid_refresh_token_is_invalid_grant(flow):
    response = token_post(
        {"grant_type": "refresh_token", "refresh_token": "nope", "client_id": flow.client_id}
    )

    assert_oauth_error(response, "invalid_grant")


# --- Housekeeping ---------------------------------------------------------------


@pytest.mark.django_db
def test_codes_never_exchanged_have_their_sessions_revoked(flow, person, django_capture_on_commit_callbacks):
    from apps.accounts.services.oauth import oauth_authorizations_expire

    signed_in_code(flow, person)
    expired = timezone.now() - timedelta(seconds=1)
    OAuthAuthorization.objects.update(expires_at=expired)
    Grant.objects.update(expires=expired)

    with django_capture_on_commit_callbacks(execute=True):
        assert oauth_authorizations_expire() == 1
        assert oauth_authorizations_expire() == 0

    session = Session.objects.get(user=person)
    assert session.revoke_reason == "oauth_code_expired"
    assert not Grant.objects.exists()
    assert OAuthAuthorization.objects.get().sealed_tokens == ""


@pytest.mark.django_db
def test_the_periodic_task_expires_unused_codes(flow, person, django_capture_on_commit_callbacks):
    from apps.accounts.tasks_federation import oauth_authorizations_expire

    signed_in_code(flow, person)
    OAuthAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert oauth_authorizations_expire.delay().get() == 1

    assert Session.objects.get(user=person).revoked_at is not None
    assert (
        settings.CELERY_BEAT_SCHEDULE["accounts-oauth-expire-codes"]["task"]
        == oauth_authorizations_expire.name
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_exchanges_of_one_code_issue_tokens_once(app_client, person):
    import threading
    from contextlib import nullcontext

    from django.db import connection

    flow = HostedFlow(capture=lambda execute=True: nullcontext(), client_id=app_client.client_id)
    code = signed_in_code(flow, person)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def exchange() -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(flow.token(code).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=exchange) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [200, 400, 400, 400]
    assert OAuthAuthorization.objects.get().exchanged_at is not None
    # The other presentations count as reuse of the code: its session is revoked.
    assert Session.objects.get(user=person).revoke_reason == "oauth_code_reused"


@pytest.mark.django_db
def test_throttled_token_requests_answer_in_oauth_form(flow, monkeypatch):
    from tests.accounts.auth_helpers import set_throttle_rate

    set_throttle_rate(monkeypatch, "anon", "1/min")
    flow.token("first")

    response = flow.token("second")

    assert_oauth_error(response, "invalid_request", status=429)
    assert int(response["Retry-After"]) >= 1
