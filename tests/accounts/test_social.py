"""Sign in with Google / Apple: ID tokens verified against JWKS served by a local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.cache import cache
from django.test import override_settings

from apps.accounts.models import AuditEvent, Session, SocialIdentity, User
from apps.accounts.services.social import _jwks_cache_key as _jwks_key
from apps.core.metrics import AUTH_LOGIN_FAILURES
from tests.factories import UserFactory

GOOGLE_CLIENT = "1234-ios.apps.googleusercontent.com"
APPLE_CLIENT = "com.example.app"
DEVICE = {"device_id": "install-social-1", "name": "Pixel 9", "platform": "android"}


class _JwksHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: Any = self.server
        server.hits += 1
        if server.status != 200:
            self.send_response(server.status)
            self.end_headers()
            return
        body = json.dumps(server.jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if server.cache_control:
            self.send_header("Cache-Control", server.cache_control)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class JwksServer:
    def __init__(self) -> None:
        self.httpd: Any = ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
        self.httpd.jwks = {"keys": []}
        self.httpd.hits = 0
        self.httpd.status = 200
        self.httpd.cache_control = ""
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/keys"

    @property
    def hits(self) -> int:
        return int(self.httpd.hits)

    def publish(self, *keys: dict[str, Any]) -> None:
        self.httpd.jwks = {"keys": list(keys)}

    def fail_with(self, status: int) -> None:
        self.httpd.status = status

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SigningKey:
    def __init__(self, alg: str = "RS256", kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid or uuid.uuid4().hex[:12]
        if alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = {**jwk, "kid": self.kid, "alg": alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers})


def google_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": GOOGLE_CLIENT,
        "sub": "google-subject-1",
        "email": "ada@example.com",
        "email_verified": True,
        "name": "Ada Lovelace",
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def apple_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "https://appleid.apple.com",
        "aud": APPLE_CLIENT,
        "sub": "001234.apple-subject.0987",
        "email": "grace@privaterelay.appleid.com",
        "email_verified": "true",
        "is_private_email": "true",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture
def google_key(jwks_server: JwksServer) -> SigningKey:
    key = SigningKey()
    jwks_server.publish(key.jwk)
    return key


@pytest.fixture(autouse=True)
def providers(jwks_server: JwksServer) -> Iterator[None]:
    cache.clear()
    with override_settings(
        SOCIAL_GOOGLE_CLIENT_IDS=[GOOGLE_CLIENT, "1234-android.apps.googleusercontent.com"],
        SOCIAL_APPLE_CLIENT_IDS=[APPLE_CLIENT],
        SOCIAL_GOOGLE_JWKS_URL=jwks_server.url,
        SOCIAL_APPLE_JWKS_URL=jwks_server.url,
        SOCIAL_JWKS_REFETCH_INTERVAL_SECONDS=60,
    ):
        yield
    cache.clear()


def social(api_client: Any, provider: str, token: str, **extra: Any) -> Any:
    body = {"id_token": token, "device": DEVICE, **extra}
    return api_client.post(f"/api/v1/auth/social/{provider}", body, format="json")


def assert_invalid_token(response: Any) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_token"


def failures(reason: str) -> float:
    return AUTH_LOGIN_FAILURES.labels(reason=reason)._value.get()


# --- Success ----------------------------------------------------------------


@pytest.mark.django_db
def test_first_google_sign_in_creates_a_verified_account_with_working_tokens(api_client, google_key):
    response = social(api_client, "google", google_key.sign(google_claims()))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["created"] is True
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["email_verified"] is True
    user = User.objects.get(email="ada@example.com")
    assert user.display_name == "Ada Lovelace"
    assert not user.has_usable_password()
    identity = SocialIdentity.objects.get(provider="google", subject="google-subject-1")
    assert identity.user == user
    session = Session.objects.get(pk=body["session_id"])
    assert session.via == "social_google"
    assert session.device.device_id == DEVICE["device_id"]
    assert session.device.trusted_at is not None
    sessions = api_client.get("/api/v1/auth/sessions", HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert sessions.status_code == 200
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.SOCIAL_LOGIN, target=user).exists()
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.REGISTER, target=user).exists()


@pytest.mark.django_db
def test_second_sign_in_with_the_same_subject_reuses_the_account(api_client, google_key):
    first = social(api_client, "google", google_key.sign(google_claims()))
    # The address at Google changed since: the subject is what identifies the person.
    second = social(api_client, "google", google_key.sign(google_claims(email="ada.new@example.com")))

    assert first.status_code == second.status_code == 200
    assert second.json()["created"] is False
    assert second.json()["user"]["id"] == first.json()["user"]["id"]
    assert User.objects.count() == 1
    assert SocialIdentity.objects.count() == 1
    assert Session.objects.filter(user__email="ada@example.com").count() == 2


@pytest.mark.django_db
def test_verified_email_links_the_existing_account(api_client, google_key):
    existing = UserFactory(email="ada@example.com", email_verified=True)

    response = social(api_client, "google", google_key.sign(google_claims()))

    assert response.status_code == 200
    assert response.json()["created"] is False
    assert response.json()["user"]["id"] == str(existing.pk)
    assert SocialIdentity.objects.get().user == existing
    existing.refresh_from_db()
    assert existing.has_usable_password()  # a verified owner keeps their password


@pytest.mark.django_db
def test_linking_an_unverified_account_disables_its_password_and_sessions(api_client, google_key, client_for):
    squatter = UserFactory(email="ada@example.com", email_verified=False)
    squatter_client = client_for(squatter)
    assert squatter_client.get("/api/v1/auth/sessions").status_code == 200

    response = social(api_client, "google", google_key.sign(google_claims()))

    assert response.status_code == 200
    squatter.refresh_from_db()
    assert squatter.email_verified is True
    assert not squatter.has_usable_password()
    assert squatter_client.get("/api/v1/auth/sessions").status_code == 401
    active = Session.objects.filter(user=squatter, revoked_at__isnull=True)
    assert [str(s.pk) for s in active] == [response.json()["session_id"]]


@pytest.mark.django_db
def test_unverified_email_is_not_linked(api_client, google_key):
    existing = UserFactory(email="ada@example.com")

    response = social(api_client, "google", google_key.sign(google_claims(email_verified=False)))

    assert_invalid_token(response)
    assert not SocialIdentity.objects.exists()
    assert not Session.objects.filter(user=existing).exists()
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_unverified_email_does_not_create_an_account(api_client, google_key):
    response = social(api_client, "google", google_key.sign(google_claims(email_verified=False)))

    assert_invalid_token(response)
    assert not User.objects.exists()


@pytest.mark.django_db
def test_apple_nonce_is_compared_with_the_hash_of_the_raw_nonce(api_client, jwks_server):
    key = SigningKey()
    jwks_server.publish(key.jwk)
    raw = "r4w-n0nce-" + uuid.uuid4().hex
    hashed = hashlib.sha256(raw.encode()).hexdigest()
    token = key.sign(apple_claims(nonce=hashed))

    replayed_hash = social(api_client, "apple", token, nonce=hashed)
    accepted = social(api_client, "apple", token, nonce=raw)

    assert_invalid_token(replayed_hash)
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["user"]["email"] == "grace@privaterelay.appleid.com"
    assert SocialIdentity.objects.get().provider == "apple"


@pytest.mark.django_db
def test_google_nonce_must_match_as_sent(api_client, google_key):
    token = google_key.sign(google_claims(nonce="n-123"))

    assert_invalid_token(social(api_client, "google", token, nonce="n-124"))
    assert_invalid_token(social(api_client, "google", google_key.sign(google_claims()), nonce="n-123"))
    assert social(api_client, "google", token, nonce="n-123").status_code == 200


@pytest.mark.django_db
def test_es256_keys_are_accepted(api_client, jwks_server):
    key = SigningKey(alg="ES256")
    jwks_server.publish(key.jwk)

    response = social(api_client, "apple", key.sign(apple_claims()))

    assert response.status_code == 200, response.content


# --- Refusals ----------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_audience_is_refused(api_client, google_key):
    before = failures("social_audience")

    response = social(api_client, "google", google_key.sign(google_claims(aud="someone-elses-app")))

    assert_invalid_token(response)
    assert failures("social_audience") == before + 1
    assert not User.objects.exists()
    assert AuditEvent.objects.filter(
        kind=AuditEvent.Kind.LOGIN_FAILED, data__reason="social_audience"
    ).exists()


@pytest.mark.django_db
def test_wrong_issuer_is_refused(api_client, google_key):
    assert_invalid_token(
        social(api_client, "google", google_key.sign(google_claims(iss="https://evil.example")))
    )
    # An Apple token posted as Google (and the other way round) has the wrong issuer.
    assert_invalid_token(social(api_client, "google", google_key.sign(apple_claims(aud=GOOGLE_CLIENT))))


@pytest.mark.django_db
def test_google_issuer_without_scheme_is_accepted(api_client, google_key):
    response = social(api_client, "google", google_key.sign(google_claims(iss="accounts.google.com")))

    assert response.status_code == 200


@pytest.mark.django_db
def test_expired_token_is_refused(api_client, google_key):
    now = int(time.time())
    token = google_key.sign(google_claims(iat=now - 7200, exp=now - 3600))

    assert_invalid_token(social(api_client, "google", token))


@pytest.mark.django_db
def test_bad_signature_is_refused(api_client, google_key):
    impostor = SigningKey(kid=google_key.kid)  # same key id, different key

    assert_invalid_token(social(api_client, "google", impostor.sign(google_claims())))


@pytest.mark.django_db
def test_tampered_payload_is_refused(api_client, google_key):
    header, _payload, signature = google_key.sign(google_claims()).split(".")
    forged = jwt.utils.base64url_encode(json.dumps(google_claims(sub="someone-else")).encode()).decode()

    assert_invalid_token(social(api_client, "google", f"{header}.{forged}.{signature}"))


@pytest.mark.django_db
def test_alg_none_is_refused(api_client, google_key):
    token = jwt.encode(google_claims(), None, algorithm="none", headers={"kid": google_key.kid})

    assert_invalid_token(social(api_client, "google", token))
    assert not User.objects.exists()


@pytest.mark.django_db
def test_hmac_signed_with_the_public_key_is_refused(api_client, google_key):
    # The classic key-confusion attack: HS256 keyed with the provider's public key.
    public_pem = google_key.private.public_key().public_bytes(
        encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": google_key.kid}).encode())
    payload = jwt.utils.base64url_encode(json.dumps(google_claims()).encode())
    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest())

    assert_invalid_token(social(api_client, "google", (signing_input + b"." + signature).decode()))


@pytest.mark.django_db
def test_garbage_token_is_refused(api_client, google_key):
    assert_invalid_token(social(api_client, "google", "not-a-jwt"))


@pytest.mark.django_db
def test_unknown_kid_refetches_once_then_refuses(api_client, jwks_server, google_key):
    assert social(api_client, "google", google_key.sign(google_claims())).status_code == 200
    hits_after_first = jwks_server.hits
    stranger = SigningKey()

    first = social(api_client, "google", stranger.sign(google_claims()))
    second = social(api_client, "google", SigningKey().sign(google_claims()))

    assert_invalid_token(first)
    assert_invalid_token(second)
    # One refetch for the unknown kid; the next unknown kid within the interval does not fetch again.
    assert jwks_server.hits == hits_after_first + 1


@pytest.mark.django_db
def test_rotated_provider_keys_are_picked_up(api_client, jwks_server, google_key):
    assert social(api_client, "google", google_key.sign(google_claims())).status_code == 200
    rotated = SigningKey()
    jwks_server.publish(google_key.jwk, rotated.jwk)

    response = social(api_client, "google", rotated.sign(google_claims()))

    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_keys_are_cached_between_sign_ins(api_client, jwks_server, google_key):
    for _ in range(3):
        assert social(api_client, "google", google_key.sign(google_claims())).status_code == 200

    assert jwks_server.hits == 1


@pytest.mark.django_db
def test_cached_keys_stand_in_while_the_provider_is_down(api_client, jwks_server, google_key):
    with override_settings(SOCIAL_JWKS_CACHE_SECONDS=0):
        assert social(api_client, "google", google_key.sign(google_claims())).status_code == 200
        jwks_server.fail_with(500)
        # The cached copy is no longer fresh and the refetch fails: the stale keys still verify.
        response = social(api_client, "google", google_key.sign(google_claims()))

    assert response.status_code == 200
    assert jwks_server.hits == 2


@pytest.mark.django_db
def test_provider_cache_control_shortens_the_cache(api_client, jwks_server, google_key):
    jwks_server.httpd.cache_control = "public, max-age=0, must-revalidate"
    with override_settings(SOCIAL_JWKS_CACHE_SECONDS=3600):
        assert social(api_client, "google", google_key.sign(google_claims())).status_code == 200

    entry = cache.get(_jwks_key(jwks_server.url))
    # max-age=0 is floored at a minute so a provider cannot make every sign-in fetch.
    assert 0 < entry["fresh_until"] - time.time() <= 60


@pytest.mark.django_db
def test_provider_unreachable_without_cached_keys_is_503(api_client, jwks_server, google_key):
    jwks_server.fail_with(502)

    response = social(api_client, "google", google_key.sign(google_claims()))

    assert response.status_code == 503
    assert response.json()["code"] == "provider_unavailable"
    assert not User.objects.exists()


@pytest.mark.django_db
def test_keys_are_never_fetched_over_plain_http_from_elsewhere(api_client, google_key):
    with override_settings(SOCIAL_GOOGLE_JWKS_URL="http://keys.example.com/certs"):
        response = social(api_client, "google", google_key.sign(google_claims()))

    assert response.status_code == 503
    assert not User.objects.exists()


@pytest.mark.django_db
def test_provider_without_client_ids_refuses_every_token(api_client, google_key):
    with override_settings(SOCIAL_GOOGLE_CLIENT_IDS=[]):
        assert_invalid_token(social(api_client, "google", google_key.sign(google_claims())))


@pytest.mark.django_db
def test_deactivated_account_cannot_sign_in(api_client, google_key):
    first = social(api_client, "google", google_key.sign(google_claims()))
    User.objects.filter(pk=first.json()["user"]["id"]).update(is_active=False)

    assert_invalid_token(social(api_client, "google", google_key.sign(google_claims())))


@pytest.mark.django_db
def test_unknown_provider_is_404(api_client, google_key):
    response = social(api_client, "facebook", google_key.sign(google_claims()))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"device": DEVICE},
        {"id_token": 123, "device": DEVICE},
        {"id_token": "x.y.z"},
        {"id_token": "x.y.z", "device": {"name": "no id", "platform": "ios"}},
        {"id_token": "x.y.z", "device": DEVICE, "extra": True},
        {"id_token": "x.y.z", "device": DEVICE, "nonce": ["a"]},
    ],
)
def test_malformed_bodies_are_validation_errors(api_client, body):
    response = api_client.post("/api/v1/auth/social/google", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


# --- What follows the first factor --------------------------------------------


@pytest.mark.django_db
def test_account_with_mfa_still_needs_its_second_factor(api_client, google_key):
    import pyotp

    from apps.accounts.services.mfa import totp_setup_begin, totp_setup_confirm

    user = UserFactory(email="ada@example.com")
    setup = totp_setup_begin(user=user)
    totp_setup_confirm(user=user, code=pyotp.TOTP(setup.secret).now())

    response = social(api_client, "google", google_key.sign(google_claims()))

    assert response.status_code == 403
    assert response.json()["code"] == "mfa_required"
    assert response.json()["mfa_token"]
    assert not Session.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_social_sign_in_on_a_new_device_needs_no_step_up(api_client, google_key):
    from apps.accounts.services.sessions import session_start

    user = UserFactory(email="ada@example.com")
    session_start(
        user=user,
        device={"device_id": "phone-a", "platform": "ios"},
        ip=None,
        user_agent=None,
        trust_device=True,
    )

    response = social(api_client, "google", google_key.sign(google_claims()))

    assert response.status_code == 200
    assert Session.objects.get(pk=response.json()["session_id"]).device.trusted_at is not None


@pytest.mark.django_db
def test_id_token_never_reaches_the_logs(api_client, google_key, capsys):
    token = google_key.sign(google_claims(aud="wrong"))

    social(api_client, "google", token)

    captured = capsys.readouterr()
    assert token not in captured.out + captured.err
    assert "ada@example.com" not in captured.out + captured.err


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_sign_ins_end_on_one_account(google_key):
    from django.db import connection
    from rest_framework.test import APIClient

    token = google_key.sign(google_claims())
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def sign_in(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            device = {**DEVICE, "device_id": f"install-{index}"}
            body = {"id_token": token, "device": device}
            statuses.append(APIClient().post("/api/v1/auth/social/google", body, format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_in, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert statuses == [200, 200, 200, 200]
    assert User.objects.filter(email="ada@example.com").count() == 1
    assert SocialIdentity.objects.count() == 1
    assert Session.objects.filter(user__email="ada@example.com").count() == 4
