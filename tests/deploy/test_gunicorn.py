"""deploy/gunicorn.conf.py: its settings, and real gunicorn workers whose metrics add up."""

from __future__ import annotations

import json
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

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "gunicorn.conf.py"
GUNICORN = Path(sys.executable).with_name("gunicorn")

READ_CONF = """
import json, runpy, sys
conf = runpy.run_path(sys.argv[1])
import os
print(json.dumps({
    "bind": conf["bind"],
    "workers": conf["workers"],
    "worker_class": conf["worker_class"],
    "keepalive": conf["keepalive"],
    "accesslog": conf["accesslog"],
    "worker_tmp_dir": conf["worker_tmp_dir"],
    "preload_app": conf["preload_app"],
    "control_socket_disable": conf["control_socket_disable"],
    "child_exit": callable(conf["child_exit"]),
    "multiproc_dir": os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
    "prometheus_imported": "prometheus_client" in sys.modules,
}))
"""


def read_conf(**env: str) -> dict[str, object]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PORT", "WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR")
    }
    completed = subprocess.run(
        [sys.executable, "-c", READ_CONF, str(CONF)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(completed.stdout)


def test_defaults_two_sync_workers_no_access_log_metrics_ready():
    conf = read_conf()

    assert conf["bind"] == "0.0.0.0:8000"
    assert conf["workers"] == 2
    assert conf["worker_class"] == "sync"
    assert conf["keepalive"] == 5
    assert conf["accesslog"] is None
    assert conf["worker_tmp_dir"] == ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    assert conf["preload_app"] is False
    assert conf["control_socket_disable"] is True
    assert conf["child_exit"] is True
    assert conf["multiproc_dir"] and Path(str(conf["multiproc_dir"])).is_dir()
    # Imported lazily in the hooks: importing it in the master would fix its
    # value class before the directory is known.
    assert conf["prometheus_imported"] is False


def test_environment_sets_port_workers_and_metrics_directory(tmp_path):
    conf = read_conf(PORT="9123", WEB_CONCURRENCY="5", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    assert conf["bind"] == "0.0.0.0:9123"
    assert conf["workers"] == 5
    assert conf["multiproc_dir"] == str(tmp_path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_listener(port: int, server: subprocess.Popen[str], deadline_seconds: float = 60) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "gunicorn exited during start-up"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gunicorn did not listen on {port} within {deadline_seconds}s")


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=60) as response:  # the first ones wait for a worker to boot
        return response.status, response.read().decode()


@pytest.mark.e2e
def test_gunicorn_workers_metrics_add_up_across_worker_restarts(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale file of a previous run")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PROMETHEUS"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "KEEL_VAR_DIR": str(tmp_path / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "WEB_CONCURRENCY": "2",
        }
    )
    # Every worker serves one request and is replaced: each request below is
    # answered by a different process, the scrape by yet another one.
    server = subprocess.Popen(
        [str(GUNICORN), "-c", str(CONF), "--bind", f"127.0.0.1:{port}", "--max-requests", "1", "config.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_listener(port, server)
        for _ in range(3):
            status, body = _get(f"http://127.0.0.1:{port}/healthz")
            assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)

    assert server.returncode == 0, stderr[-3000:]
    assert status == 200
    healthz = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "keel_http_requests_total" and sample.labels.get("route") == "/healthz"
    ]
    assert healthz == [3.0]
    assert not (metrics_dir / "counter_999999.db").exists()
    worker_pids = {path.stem.split("_")[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(worker_pids) >= 4
    assert "Autorestarting worker" in stderr
