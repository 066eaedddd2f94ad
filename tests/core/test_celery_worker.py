"""A real Celery worker process against Redis: request ids, retries with backoff, time limits.

The test process publishes through the Redis broker exactly as a web worker
does (the test settings otherwise run tasks eagerly) and reads what the
tasks recorded from the Redis cache the worker writes to.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache

from apps.core.request_context import bind_request_id
from apps.core.tasks import echo_request_id
from config.celery import app
from tests.core import celery_probe_tasks as probes

pytestmark = pytest.mark.redis

WORKER_START_TIMEOUT = 60.0


def poll(read: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if value is not None:
            return value
        time.sleep(interval)
    raise AssertionError(f"nothing arrived within {timeout} s")


@dataclass
class Worker:
    queue: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _start_worker(
    tmp_path: Path, redis_url: str, *, pool: str, extra_env: dict[str, str] | None = None
) -> Worker:
    queue = f"keel-test-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "REDIS_URL": redis_url,
            "KEEL_VAR_DIR": str(tmp_path),
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "LOG_FORMAT": "json",
            **(extra_env or {}),
        }
    )
    log = tmp_path / "worker.log"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        pool,
        "--concurrency",
        "1",
        "--queues",
        queue,
        "--include",
        probes.__name__,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
        "--hostname",
        f"{queue}@%h",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(queue=queue, process=process, log=log)
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while " ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_worker(worker, redis_url)
            pytest.fail(f"the worker did not start:\n{worker.log_tail()}")
        time.sleep(0.1)
    return worker


def _stop_worker(worker: Worker, redis_url: str) -> None:
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(worker.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    worker.process.wait(timeout=10)
    client = redis.Redis.from_url(redis_url)
    try:
        leftovers = [worker.queue, *client.scan_iter(match=f"_kombu.*{worker.queue}*")]
        client.delete(*leftovers)
    finally:
        client.close()


@pytest.fixture(scope="module")
def solo_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    redis_url = os.environ["REDIS_URL"]
    worker = _start_worker(tmp_path_factory.mktemp("solo-worker"), redis_url, pool="solo")
    yield worker
    _stop_worker(worker, redis_url)


@pytest.fixture(scope="module")
def prefork_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    redis_url = os.environ["REDIS_URL"]
    worker = _start_worker(tmp_path_factory.mktemp("prefork-worker"), redis_url, pool="prefork")
    yield worker
    _stop_worker(worker, redis_url)


@pytest.fixture
def worker_cache(redis_url: str) -> RedisCache:
    """The cache the worker writes to (the same Redis and key prefix as its settings)."""
    return RedisCache(redis_url, {"KEY_PREFIX": "keel"})


@pytest.fixture
def publish(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Queue a task through the Redis broker, as a web process does."""
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    connection = app.connection_for_write(redis_url)
    producer = app.amqp.Producer(connection, auto_declare=True)

    def send(task: Any, worker: Worker, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        task.apply_async(kwargs=kwargs, queue=worker.queue, producer=producer, **(options or {}))

    yield send
    producer.release()
    connection.release()


def test_request_id_bound_when_publishing_is_bound_in_the_worker(solo_worker, publish, worker_cache):
    marker = uuid.uuid4().hex
    bind_request_id(f"publisher-{marker}")
    try:
        publish(echo_request_id, solo_worker, marker=marker)
    finally:
        bind_request_id(None)

    seen = poll(lambda: worker_cache.get(f"echo_request_id:{marker}"))
    assert seen == {"marker": marker, "request_id": f"publisher-{marker}"}


def test_task_published_outside_a_request_runs_under_a_fresh_request_id(solo_worker, publish, worker_cache):
    marker = uuid.uuid4().hex
    bind_request_id(None)
    publish(echo_request_id, solo_worker, marker=marker)

    seen = poll(lambda: worker_cache.get(f"echo_request_id:{marker}"))
    assert re.fullmatch(r"[0-9a-f]{32}", seen["request_id"])


def test_worker_retries_a_transient_error_with_backoff_and_keeps_the_request_id(
    solo_worker, publish, worker_cache
):
    marker = uuid.uuid4().hex
    bind_request_id(f"retry-{marker}")
    try:
        publish(probes.fail_transiently, solo_worker, marker=marker, failures=2)
    finally:
        bind_request_id(None)

    assert poll(lambda: worker_cache.get(probes.probe_key(marker, "done")), timeout=30) == 3
    attempts = worker_cache.get(probes.probe_key(marker, "attempts"))
    assert [attempt["retries"] for attempt in attempts] == [0, 1, 2]
    assert {attempt["request_id"] for attempt in attempts} == {f"retry-{marker}"}
    assert attempts[0]["eta"] is None
    for number in (1, 2):
        failed_at = attempts[number - 1]["at"]
        # Full-jitter exponential backoff: after the n-th failure, wait a whole
        # number of seconds from 0 to 2**(n-1); a wait of 0 is sent without an ETA.
        eta_text = attempts[number]["eta"]
        eta = datetime.fromisoformat(eta_text).timestamp() if eta_text else failed_at
        assert -0.5 <= eta - failed_at <= 2 ** (number - 1) + 0.5
        assert attempts[number]["at"] >= eta - 0.1  # never before its time


def test_prefork_worker_enforces_the_soft_then_the_hard_time_limit(prefork_worker, publish, worker_cache):
    marker = uuid.uuid4().hex
    # Every task carries its limits in the message (from CELERY_TASK_*_TIME_LIMIT
    # in the publisher's settings); here they are shortened for the test.
    limits = {"soft_time_limit": 1, "time_limit": 2}
    publish(probes.outlive_time_limits, prefork_worker, options=limits, marker=marker, seconds=60)

    started_pid = poll(lambda: worker_cache.get(probes.probe_key(marker, "started")))
    # Soft limit (1 s): the task is told to stop and may clean up.
    assert poll(lambda: worker_cache.get(probes.probe_key(marker, "soft_limit"))) == started_pid
    # Hard limit (2 s): the overrunning process is killed and replaced, so the
    # single pool slot serves the next task long before the 60 s sleep ends.
    publish(probes.report_pid, prefork_worker, marker=marker)
    next_pid = poll(lambda: worker_cache.get(probes.probe_key(marker, "pid")), timeout=20)
    assert next_pid != started_pid
    assert worker_cache.get(probes.probe_key(marker, "finished")) is None
    with pytest.raises(ProcessLookupError):
        os.kill(started_pid, 0)
