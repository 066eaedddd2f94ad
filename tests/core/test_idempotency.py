"""Idempotency-Key: a retry returns the first answer and the work is done once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.core.models import IdempotencyRecord
from tests.core.views import FAIL_NEXT_CACHE_KEY, AbortRequest
from tests.factories import UserFactory

pytestmark = pytest.mark.urls("tests.core.urls")
USERS = "/api/v1/test/users"


@pytest.fixture
def owner(db):
    return UserFactory()


@pytest.fixture
def client(owner) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(owner)
    return client


def create(client: APIClient, key: str | None, email: str, path: str = USERS, **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(path, {"email": email, **extra}, format="json", **headers)


def work_done(email: str) -> int:
    return User.objects.filter(email=email).count()


def assert_outside_any_transaction() -> None:
    assert not connection.in_atomic_block
    assert connection.get_autocommit()


@pytest.mark.django_db
def test_a_replay_returns_the_stored_answer_and_does_the_work_once(client):
    first = create(client, "key-1", "once@example.com")
    second = create(client, "key-1", "once@example.com")

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert second.status_code == 201
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"] == "application/json"
    assert second["Location"] == first["Location"]
    assert second["ETag"] == first["ETag"]
    assert second["Idempotent-Replayed"] == "true"
    assert work_done("once@example.com") == 1
    record = IdempotencyRecord.objects.get(key="key-1")
    assert record.status_code == 201


@pytest.mark.django_db
def test_the_same_key_on_the_path_with_a_trailing_slash_is_the_same_request(client):
    first = create(client, "key-slash", "slash@example.com")
    second = create(client, "key-slash", "slash@example.com", path=f"{USERS}/")

    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert work_done("slash@example.com") == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_409_idempotency_conflict(client):
    create(client, "key-2", "first@example.com")

    response = create(client, "key-2", "second@example.com")

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_conflict"
    assert work_done("second@example.com") == 0
    assert IdempotencyRecord.objects.filter(key="key-2").count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_query_string_is_a_conflict(client):
    create(client, "key-q", "query@example.com", path=f"{USERS}?mode=a")

    response = create(client, "key-q", "query@example.com", path=f"{USERS}?mode=b")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"


@pytest.mark.django_db
def test_keys_are_scoped_per_user(client):
    create(client, "shared-key", "alice-work@example.com")
    other = APIClient()
    other.force_authenticate(UserFactory())

    response = create(other, "shared-key", "bob-work@example.com")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert work_done("alice-work@example.com") == 1
    assert work_done("bob-work@example.com") == 1
    assert IdempotencyRecord.objects.filter(key="shared-key").count() == 2


@pytest.mark.django_db
def test_an_expired_key_behaves_as_new(client):
    create(client, "old-key", "before@example.com")
    IdempotencyRecord.objects.filter(key="old-key").update(
        created_at=timezone.now() - settings.IDEMPOTENCY_KEY_TTL - timedelta(seconds=1)
    )

    response = create(client, "old-key", "after@example.com")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert work_done("after@example.com") == 1
    (record,) = IdempotencyRecord.objects.filter(key="old-key")
    assert record.created_at > timezone.now() - timedelta(minutes=1)


@pytest.mark.django_db
def test_a_key_just_inside_its_lifetime_still_replays(client):
    create(client, "young-key", "young@example.com")
    IdempotencyRecord.objects.filter(key="young-key").update(
        created_at=timezone.now() - settings.IDEMPOTENCY_KEY_TTL + timedelta(minutes=1)
    )

    response = create(client, "young-key", "young@example.com")

    assert response["Idempotent-Replayed"] == "true"
    assert work_done("young@example.com") == 1


@pytest.mark.django_db(transaction=True)
def test_a_5xx_is_not_stored_and_the_retry_does_the_work(client):
    cache.set(FAIL_NEXT_CACHE_KEY, True)

    failed = create(client, "key-5xx", "retry@example.com")

    assert failed.status_code == 500
    assert failed.json()["code"] == "server_error"
    assert work_done("retry@example.com") == 0  # the half-done work was rolled back
    assert not IdempotencyRecord.objects.filter(key="key-5xx").exists()
    assert_outside_any_transaction()

    retried = create(client, "key-5xx", "retry@example.com")

    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert work_done("retry@example.com") == 1
    assert IdempotencyRecord.objects.get(key="key-5xx").status_code == 201


@pytest.mark.django_db
def test_a_4xx_answer_is_the_answer_and_is_replayed(client):
    first = client.post("/api/v1/test/precondition", {}, format="json", HTTP_IDEMPOTENCY_KEY="key-412")
    second = client.post("/api/v1/test/precondition", {}, format="json", HTTP_IDEMPOTENCY_KEY="key-412")

    assert first.status_code == second.status_code == 412
    assert second["Content-Type"] == "application/problem+json"
    assert second.json()["code"] == "precondition_failed"
    assert second["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_a_throttled_answer_is_not_stored_so_the_retry_can_succeed(client, throttle_rates):
    throttle_rates(core_work="1/min")
    path = "/api/v1/test/throttled-work"
    client.post(path, {"email": "first-try@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="t-1")

    refused = client.post(path, {"email": "later@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="t-2")
    throttle_rates(core_work="10/min")
    retried = client.post(path, {"email": "later@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="t-2")

    assert refused.status_code == 429
    assert refused["Retry-After"]
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert work_done("later@example.com") == 1


@pytest.mark.django_db
def test_an_empty_204_answer_is_replayed_empty(client):
    first = client.delete("/api/v1/test/no-content", HTTP_IDEMPOTENCY_KEY="key-204")
    second = client.delete("/api/v1/test/no-content", HTTP_IDEMPOTENCY_KEY="key-204")

    assert first.status_code == second.status_code == 204
    assert second.content == b""
    assert "Content-Type" not in second
    assert second["Idempotent-Replayed"] == "true"
    assert User.objects.filter(email__startswith="deleted-").count() == 1


@pytest.mark.django_db
def test_without_a_key_every_request_does_its_work(client):
    create(client, None, "nokey1@example.com")
    create(client, None, "nokey2@example.com")

    assert work_done("nokey1@example.com") == work_done("nokey2@example.com") == 1
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_anonymous_requests_ignore_the_header():
    anonymous = APIClient()
    path = "/api/v1/test/anonymous-users"

    first = anonymous.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="anon-key")
    second = anonymous.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="anon-key")
    bad_key = anonymous.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="not valid")

    assert [first.status_code, second.status_code, bad_key.status_code] == [201, 201, 201]
    assert "Idempotent-Replayed" not in second
    assert User.objects.filter(email__startswith="anon-").count() == 3
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["has space", "k" * 256, "ключ", "tab\tkey"])
def test_an_invalid_key_is_400_and_nothing_is_done(client, key):
    response = create(client, key, "invalid-key@example.com")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert list(body["errors"]) == ["Idempotency-Key"]
    assert work_done("invalid-key@example.com") == 0


@pytest.mark.django_db
def test_a_uuid_key_and_a_255_character_key_are_accepted(client):
    assert create(client, "3f2b8a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "uuid-key@example.com").status_code == 201
    assert create(client, "k" * 255, "long-key@example.com").status_code == 201


@pytest.mark.django_db
def test_an_upload_larger_than_the_memory_limit_is_not_refused_for_its_key(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    path = "/api/v1/test/raw-upload"
    payload = bytes(range(256)) * 16  # 4 KiB

    def upload(body: bytes):
        return client.put(path, body, content_type="application/octet-stream", HTTP_IDEMPOTENCY_KEY="up-1")

    first = upload(payload)
    second = upload(payload)
    other_size = upload(payload + b"x")

    assert first.status_code == 201
    assert first.json() == {"size": 4096}
    assert second["Idempotent-Replayed"] == "true"
    assert other_size.status_code == 409
    assert User.objects.filter(email__startswith="upload-").count() == 1


@pytest.mark.django_db
def test_a_body_read_before_the_view_still_identifies_the_request(client):
    path = "/api/v1/test/peeked-body"

    first = client.post(path, {"email": "peek@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="peek")
    second = client.post(path, {"email": "peek@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="peek")
    other = client.post(path, {"email": "peek2@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="peek")

    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert work_done("peek@example.com") == 1


@pytest.mark.django_db
def test_safe_methods_ignore_the_header(client, owner):
    response = client.get(f"{USERS}/{owner.pk}", HTTP_IDEMPOTENCY_KEY="get-key")

    assert response.status_code == 200
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_the_purge_task_deletes_expired_records_only():
    from apps.core.tasks import idempotency_keys_purge_expired

    old = timezone.now() - settings.IDEMPOTENCY_KEY_TTL - timedelta(minutes=5)
    for index in range(3):
        IdempotencyRecord.objects.create(
            scope="u1", key=f"old-{index}", fingerprint="f", method="POST", path="/"
        )
    IdempotencyRecord.objects.filter(key__startswith="old-").update(created_at=old)
    IdempotencyRecord.objects.create(scope="u1", key="fresh", fingerprint="f", method="POST", path="/")

    deleted = idempotency_keys_purge_expired.delay().get()

    assert deleted == 3
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


# --- Transaction hygiene: no path leaves the connection in the atomic block ---


@pytest.mark.django_db(transaction=True)
def test_success_and_replay_leave_no_transaction_open(client):
    create(client, "hyg-1", "hyg1@example.com")
    assert_outside_any_transaction()
    create(client, "hyg-1", "hyg1@example.com")
    assert_outside_any_transaction()
    create(client, "hyg-1", "other@example.com")  # conflict
    assert_outside_any_transaction()
    create(client, "bad key", "x@example.com")  # invalid
    assert_outside_any_transaction()
    assert work_done("hyg1@example.com") == 1


@pytest.mark.django_db(transaction=True)
def test_an_exception_in_the_view_rolls_back_and_closes_the_transaction(client):
    response = client.post(
        "/api/v1/test/boom", {"email": "boom-work@example.com"}, HTTP_IDEMPOTENCY_KEY="hyg-2"
    )

    assert response.status_code == 500
    assert_outside_any_transaction()
    assert work_done("boom-work@example.com") == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_rendering_failure_rolls_back_the_work_and_closes_the_transaction(client):
    response = client.post(
        "/api/v1/test/unrenderable", {"email": "unrenderable@example.com"}, HTTP_IDEMPOTENCY_KEY="hyg-3"
    )

    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert_outside_any_transaction()
    assert work_done("unrenderable@example.com") == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_base_exception_escaping_the_view_still_closes_the_transaction(client):
    with pytest.raises(AbortRequest):
        client.post(
            "/api/v1/test/base-exception", {"email": "aborted@example.com"}, HTTP_IDEMPOTENCY_KEY="hyg-4"
        )

    assert_outside_any_transaction()
    assert work_done("aborted@example.com") == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_4xx_after_a_swallowed_database_error_is_answered_and_nothing_commits(client):
    path = "/api/v1/test/swallowed-db-error?answer=conflict"

    response = client.post(path, {"email": "dup@example.com"}, HTTP_IDEMPOTENCY_KEY="hyg-6")

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert_outside_any_transaction()
    assert work_done("dup@example.com") == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_success_claimed_over_a_broken_transaction_is_a_500_and_nothing_commits(client):
    path = "/api/v1/test/swallowed-db-error?answer=ok"

    response = client.post(path, {"email": "dup-ok@example.com"}, HTTP_IDEMPOTENCY_KEY="hyg-7")

    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert_outside_any_transaction()
    assert work_done("dup-ok@example.com") == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_work_commits_with_the_record(client):
    create(client, "hyg-5", "committed@example.com")

    # Outside any test transaction: both are really committed.
    assert_outside_any_transaction()
    assert work_done("committed@example.com") == 1
    assert IdempotencyRecord.objects.get(key="hyg-5").response_body
