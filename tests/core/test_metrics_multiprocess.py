"""Several worker processes with PROMETHEUS_MULTIPROC_DIR: the scrape adds all of them up.

Each "worker" is a fresh Python process (multi-process mode is chosen when
prometheus_client is imported, so it cannot be switched on in this one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import sys

import django

django.setup()

from apps.core import metrics

requests, widgets, backlog = (int(arg) for arg in sys.argv[1:4])
for _ in range(requests):
    metrics.observe_http_request(method="GET", route="/api/v1/things", status=200, seconds=0.03)
metrics.observe_http_request(method="GET", route="/api/v1/things", status=503, seconds=0.7)
metrics.counter("mp_widgets", "Widgets, counted by several processes.").inc(widgets)
metrics.gauge("mp_backlog", "Backlog seen by each live process.").set(backlog)
"""

SCRAPE = """
import sys

import django

django.setup()

from prometheus_client import generate_latest
from prometheus_client import multiprocess

from apps.core import metrics

for pid in sys.argv[1:]:
    multiprocess.mark_process_dead(int(pid))
sys.stdout.write(generate_latest(metrics.registry_for_scrape()).decode())
"""


def _env(directory: Path, tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "prometheus"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "PYTHONPATH": str(ROOT),
            "KEEL_VAR_DIR": str(tmp_path / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
        }
    )
    return env


def _python(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_scrape_adds_up_every_worker_process(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = _env(directory, tmp_path)

    first = subprocess.Popen([sys.executable, "-c", WORKER, "2", "5", "3"], cwd=ROOT, env=env)
    second = subprocess.Popen([sys.executable, "-c", WORKER, "3", "7", "4"], cwd=ROOT, env=env)
    assert first.wait(timeout=120) == 0
    assert second.wait(timeout=120) == 0
    # Each process wrote its own files; none of them holds the totals.
    assert {path.name for path in directory.glob("counter_*.db")} >= {
        f"counter_{first.pid}.db",
        f"counter_{second.pid}.db",
    }

    samples = _samples(_python(SCRAPE, env=env).stdout)

    route = (("method", "GET"), ("route", "/api/v1/things"))
    assert samples[("keel_http_requests_total", (*route, ("status_class", "2xx")))] == 5
    assert samples[("keel_http_requests_total", (*route, ("status_class", "5xx")))] == 2
    assert samples[("keel_http_request_duration_seconds_count", route)] == 7
    assert samples[("keel_http_request_duration_seconds_bucket", (("le", "0.05"), *route))] == 5
    assert samples[("keel_http_request_duration_seconds_bucket", (("le", "1.0"), *route))] == 7
    assert samples[("keel_mp_widgets_total", ())] == 12
    assert ("keel_celery_queue_length", (("queue", "default"),)) in samples
    # The gauge adds up the processes still alive: the scrape marks the first one dead.
    assert samples[("keel_mp_backlog", ())] == 7
    after_first_died = _samples(_python(SCRAPE, str(first.pid), env=env).stdout)
    assert after_first_died[("keel_mp_backlog", ())] == 4
    assert after_first_died[("keel_mp_widgets_total", ())] == 12  # counters keep the dead worker's counts
