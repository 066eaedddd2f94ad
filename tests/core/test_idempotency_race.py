"""Two identical requests racing with one Idempotency-Key: the work is done exactly once.

Real concurrency needs real row locks, so these run on PostgreSQL with
committed transactions, each request in its own thread and connection.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.core.models import IdempotencyRecord
from tests.core.views import WorkSignal
from tests.factories import UserFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.core.urls"),
]
USERS = "/api/v1/test/users"
DEADLINE_SECONDS = 30


def send(results: dict[str, Any], name: str, user: Any, body: dict[str, Any], start: Any = None) -> None:
    try:
        client = APIClient(raise_request_exception=False)
        client.force_authenticate(user)
        if start is not None:
            start.wait(timeout=DEADLINE_SECONDS)
        results[name] = client.post(USERS, body, format="json", HTTP_IDEMPOTENCY_KEY="race-key")
        # Whatever the outcome, the request's connection is back outside any transaction.
        results[f"{name}:left_open"] = connection.in_atomic_block
    except BaseException as exc:  # surfaced by the test, not lost in the thread
        results[name] = exc
    finally:
        connection.close()


def run(thread: threading.Thread) -> threading.Thread:
    thread.daemon = True
    thread.start()
    return thread


def finish(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
        assert not thread.is_alive(), "a request did not finish in time"


def assert_no_transaction_left_open(results: dict[str, Any]) -> None:
    flags = {name: value for name, value in results.items() if name.endswith(":left_open")}
    assert flags
    assert not any(flags.values()), flags


@pytest.fixture
def racer():
    WorkSignal.reset()
    return UserFactory()


def test_a_request_arriving_while_the_first_works_waits_and_replays_its_answer(racer):
    body = {"email": "race1@example.com", "sleep": 0.3}
    results: dict[str, Any] = {}

    first = run(threading.Thread(target=send, args=(results, "first", racer, body)))
    # The first request is inside its transaction, holding the key, when the second starts.
    assert WorkSignal.started.wait(timeout=DEADLINE_SECONDS)
    second = run(threading.Thread(target=send, args=(results, "second", racer, body)))
    finish(first, second)

    a, b = results["first"], results["second"]
    assert not isinstance(a, BaseException) and not isinstance(b, BaseException), results
    assert a.status_code == 201
    assert b.status_code == 201
    assert b.content == a.content
    assert b["Idempotent-Replayed"] == "true"
    assert User.objects.filter(email="race1@example.com").count() == 1
    assert IdempotencyRecord.objects.filter(key="race-key").count() == 1
    assert_no_transaction_left_open(results)


def test_two_requests_started_together_do_the_work_exactly_once(racer):
    body = {"email": "race2@example.com", "sleep": 0.3}
    results: dict[str, Any] = {}
    start = threading.Barrier(2)

    threads = [
        run(threading.Thread(target=send, args=(results, name, racer, body, start)))
        for name in ("one", "two")
    ]
    finish(*threads)

    responses = [results["one"], results["two"]]
    assert not any(isinstance(r, BaseException) for r in responses), results
    statuses = sorted(r.status_code for r in responses)
    if statuses == [201, 201]:
        assert responses[0].content == responses[1].content
        assert sum(r.has_header("Idempotent-Replayed") for r in responses) == 1
    else:
        assert statuses == [201, 409]
        refused = next(r for r in responses if r.status_code == 409)
        assert refused.json()["code"] == "idempotency_in_progress"
    assert User.objects.filter(email="race2@example.com").count() == 1
    assert_no_transaction_left_open(results)


def test_a_request_waiting_longer_than_the_lock_timeout_gets_409_in_progress_then_the_replay(racer, settings):
    settings.IDEMPOTENCY_LOCK_TIMEOUT_MS = 50
    body = {"email": "race3@example.com", "sleep": 1.0}
    results: dict[str, Any] = {}

    first = run(threading.Thread(target=send, args=(results, "first", racer, body)))
    assert WorkSignal.started.wait(timeout=DEADLINE_SECONDS)
    second = run(threading.Thread(target=send, args=(results, "second", racer, body)))
    finish(second)

    refused = results["second"]
    assert not isinstance(refused, BaseException), results
    assert refused.status_code == 409
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "idempotency_in_progress"

    finish(first)
    assert results["first"].status_code == 201
    retry: dict[str, Any] = {}
    send(retry, "retry", racer, body)
    assert retry["retry"].status_code == 201
    assert retry["retry"].content == results["first"].content
    assert retry["retry"]["Idempotent-Replayed"] == "true"
    assert User.objects.filter(email="race3@example.com").count() == 1
    assert_no_transaction_left_open({**results, **retry})
