"""What every Keel task inherits, checked without a broker (tasks run eagerly here)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.exceptions
from celery import schedules, signals
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError
from kombu import Connection, Queue

from apps.core.request_context import bind_request_id, get_request_id
from apps.core.tasks import echo_request_id
from config.celery import TRANSIENT_ERRORS, KeelTask, app
from tests.core import celery_probe_tasks as probes


@pytest.fixture
def retry_delays() -> Any:
    """The countdown of every retry Celery schedules (its public ``task_retry`` signal)."""
    delays: list[float] = []

    def on_retry(reason: Any = None, **_: Any) -> None:
        delays.append(reason.when)

    signals.task_retry.connect(on_retry, weak=False)
    yield delays
    signals.task_retry.disconnect(on_retry)


@pytest.fixture
def retrying_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let eager tasks retry as a worker would (the test settings propagate the first error)."""
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)


@pytest.fixture
def caller_request_id() -> Any:
    bind_request_id("caller-request-1")
    yield "caller-request-1"
    bind_request_id(None)


def _project_tasks() -> dict[str, Any]:
    app.loader.import_default_modules()  # what a worker imports at start-up (autodiscovery)
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_project_task_is_a_keel_task_with_late_ack_and_time_limits():
    tasks = _project_tasks()
    assert "apps.core.tasks.echo_request_id" in tasks
    for name, task in tasks.items():
        assert isinstance(task, KeelTask), name
        assert task.acks_late is True, name
        assert task.reject_on_worker_lost is True, name
        assert task.time_limit and task.soft_time_limit, name
        assert task.soft_time_limit < task.time_limit, name


def test_time_limits_come_from_settings_soft_before_hard():
    assert app.conf.task_soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert app.conf.task_time_limit == settings.CELERY_TASK_TIME_LIMIT
    assert 0 < app.conf.task_soft_time_limit < app.conf.task_time_limit
    assert echo_request_id.time_limit == settings.CELERY_TASK_TIME_LIMIT
    assert app.conf.worker_prefetch_multiplier == 1


def test_transient_errors_are_network_and_busy_database_not_every_oserror():
    for transient in (
        ConnectionError,
        ConnectionResetError,
        TimeoutError,
        OperationalError,
        redis.exceptions.ConnectionError,
        httpx.ConnectError,
        httpx.ReadTimeout,
    ):
        assert issubclass(transient, TRANSIENT_ERRORS), transient
    for permanent in (FileNotFoundError, PermissionError, ValueError, KeyError):
        assert not issubclass(permanent, TRANSIENT_ERRORS), permanent


def test_transient_error_is_retried_with_exponential_backoff_until_it_succeeds(
    retry_delays, retrying_eagerly
):
    result = probes.fail_transiently.apply(kwargs={"marker": "backoff", "failures": 3})

    assert result.successful() and result.get() == 4
    attempts = cache.get(probes.probe_key("backoff", "attempts"))
    assert [attempt["retries"] for attempt in attempts] == [0, 1, 2, 3]
    # Full jitter: the n-th retry waits a random whole number of seconds up to 2**n.
    assert len(retry_delays) == 3
    for retries, delay in enumerate(retry_delays):
        assert isinstance(delay, int)
        assert 0 <= delay <= 2**retries


def test_backoff_is_capped_and_retries_are_bounded():
    assert KeelTask.retry_backoff is True
    assert KeelTask.retry_jitter is True
    assert KeelTask.retry_backoff_max == 600
    assert KeelTask.max_retries == 8


def test_task_gives_up_after_max_retries_with_the_original_error(retry_delays, retrying_eagerly):
    result = probes.fail_transiently.apply(kwargs={"marker": "give-up", "failures": 1000})

    assert result.failed()
    assert isinstance(result.result, ConnectionError)

    attempts = cache.get(probes.probe_key("give-up", "attempts"))
    assert len(attempts) == KeelTask.max_retries + 1
    assert len(retry_delays) == KeelTask.max_retries


def test_permanent_error_is_not_retried(retry_delays, retrying_eagerly):
    result = probes.fail_permanently.apply(kwargs={"marker": "permanent"})

    assert result.failed()
    assert isinstance(result.result, ValueError)

    assert len(cache.get(probes.probe_key("permanent", "attempts"))) == 1
    assert retry_delays == []


def test_eager_task_runs_under_the_callers_request_id_and_leaves_it_bound(caller_request_id):
    echo_request_id.delay("eager")

    assert cache.get("echo_request_id:eager") == {"marker": "eager", "request_id": caller_request_id}
    assert get_request_id() == caller_request_id


def test_task_run_outside_any_request_gets_a_fresh_request_id():
    bind_request_id(None)
    echo_request_id.delay("no-caller")

    seen = cache.get("echo_request_id:no-caller")["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", seen)
    assert get_request_id() is None


def test_published_message_carries_the_request_id_header(caller_request_id, monkeypatch):
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    queue = Queue("request-id-header-test", routing_key="request-id-header-test")
    with Connection("memory://") as connection:
        producer = app.amqp.Producer(connection, auto_declare=True)
        echo_request_id.apply_async(args=["published"], queue=queue, producer=producer)
        message = connection.SimpleQueue(queue).get(timeout=2)

    assert message.headers["task"] == "apps.core.tasks.echo_request_id"
    assert message.headers["request_id"] == caller_request_id


def test_periodic_tasks_are_declared_in_code_and_name_registered_tasks():
    tasks = _project_tasks()
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert app.conf.beat_schedule == schedule
    assert schedule["core-purge-expired-idempotency-keys"]["task"] == (
        "apps.core.tasks.idempotency_keys_purge_expired"
    )
    for name, entry in schedule.items():
        assert entry["task"] in tasks, f"beat entry {name!r} names an unregistered task {entry['task']!r}"
        assert isinstance(entry["schedule"], (timedelta, schedules.BaseSchedule)), name
