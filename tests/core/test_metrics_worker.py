"""A real Celery worker serves its own metrics: tasks run in its pool processes are counted there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.core import metrics

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")
TASK = "apps.core.tasks.echo_request_id"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def _tasks_counted(text: str, state: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "keel_celery_tasks_total" and sample.labels == {"task": TASK, "state": state}
    )


def _poll(condition, deadline_seconds: float, what: str):
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} within {deadline_seconds}s")


@pytest.mark.e2e
def test_worker_serves_the_metrics_of_its_pool_processes(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from an earlier run")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        {
            # The embedded default: a file-system broker under KEEL_VAR_DIR, shared with the sender.
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "KEEL_VAR_DIR": str(tmp_path / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "KEEL_WORKER_METRICS_PORT": str(port),
            "KEEL_WORKER_METRICS_ADDR": "127.0.0.1",
        }
    )
    worker = subprocess.Popen(
        [
            str(CELERY),
            "-A",
            "config",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        before = _poll(lambda: _scrape(port), 90, "the worker did not serve /metrics")
        assert not (metrics_dir / "counter_999999.db").exists()
        assert _tasks_counted(before, "succeeded") == 0

        sender_env = {k: v for k, v in env.items() if not k.startswith("KEEL_WORKER_METRICS")}
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from apps.core.tasks import echo_request_id as t; "
                "[t.delay(f'metrics-{n}') for n in range(3)]",
            ],
            cwd=ROOT,
            env=sender_env,
            check=True,
            timeout=120,
        )

        after = _poll(
            lambda: (text := _scrape(port)) and _tasks_counted(text, "succeeded") == 3 and text,
            90,
            "three finished tasks were not counted",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)

    assert _tasks_counted(after, "failed") == 0
    # Counted by the pool processes, served by the main one: their files are not the server's.
    assert {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")} - {str(worker.pid)}
    assert worker.returncode == 0, stderr[-3000:]


def test_tasks_run_in_this_process_are_counted_by_outcome(settings):
    from apps.core.tasks import echo_request_id

    child = metrics.CELERY_TASKS.labels(task=TASK, state="succeeded")
    before = child._value.get()

    echo_request_id.delay("counted-eagerly")

    assert child._value.get() == before + 1
