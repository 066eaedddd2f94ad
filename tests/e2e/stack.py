"""Start and stop the real Keel stack the way ``make run`` does, for end-to-end tests.

``manage.py keel_run`` runs in a fresh ``KEEL_VAR_DIR`` (its own SQLite
database, file cache and broker queue) on a free port. Every process it
starts inherits a marker variable, so a test can list what is still alive
after the stack was stopped, including the worker's pool processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BASE_DIR = Path(__file__).resolve().parents[2]
MARKER_VARIABLE = "KEEL_STACK_TEST_MARKER"
RESULT_PREFIX = "KEEL-E2E-RESULT "
# Variables of the developer's or CI's environment that would point the stack
# at shared services; each stack sets what it needs explicitly.
ISOLATED_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "EMAIL_URL",
    "AWS_STORAGE_BUCKET_NAME",
    "MEDIA_ROOT",
    "DJANGO_SETTINGS_MODULE",
    "KEEL_VAR_DIR",
    "LOG_FORMAT",
    "PORT",
    "HOST",
    "CELERY_TASK_ALWAYS_EAGER",
    "PROMETHEUS_MULTIPROC_DIR",
)
START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def processes_with_marker(marker: str) -> list[int]:
    """Ids of the live processes whose environment carries ``marker`` (Linux ``/proc``; none elsewhere)."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found: list[int] = []
    proc = Path("/proc")
    if not (proc / "self" / "environ").exists():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if needle in environ.split(b"\0") and "\nState:\tZ" not in status:
            found.append(int(entry.name))
    return found


def poll_until(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


@dataclass
class KeelStack:
    port: int
    var_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    marker: str
    stopped_with: int | None = field(default=None)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1/"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, trust_env=False)

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a management command against this stack's settings and data."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def shell(self, code: str) -> Any:
        """Run Python in ``manage.py shell`` of this stack; ``result(value)`` hands a value back."""
        program = f"import json\ndef result(value):\n    print({RESULT_PREFIX!r} + json.dumps(value))\n{code}"
        completed = self.manage("shell", "--no-imports", "--verbosity", "0", "--command", program)
        for line in completed.stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX) :])
        raise AssertionError(f"no result from the shell:\n{completed.stdout}\n{completed.stderr}")

    def alive_processes(self) -> list[int]:
        return processes_with_marker(self.marker)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """Signal ``keel_run`` and wait for it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_everything()
            raise AssertionError(f"keel_run did not stop within {timeout:.0f} s:\n{self.output()[-4000:]}")
        self.stopped_with = self.process.returncode
        return self.process.returncode

    def kill_everything(self) -> None:
        """Last resort for a test that failed half-way: nothing may outlive the test run."""
        for pid in [self.process.pid, *self.alive_processes()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)


def stack_environment(var_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_VARIABLES}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "KEEL_VAR_DIR": str(var_dir),
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            # The e2e tests register several users from one address in a minute.
            "THROTTLE_RATE_AUTH_REGISTER": "1000/min",
        }
    )
    env.update(extra_env or {})
    return env


def start_stack(
    var_dir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    wait: bool = True,
) -> KeelStack:
    """``manage.py keel_run`` on a free port; with ``wait``, returns once ``/healthz`` answers."""
    var_dir.mkdir(parents=True, exist_ok=True)
    marker = uuid.uuid4().hex
    env = stack_environment(var_dir, extra_env)
    env[MARKER_VARIABLE] = marker
    port = free_port()
    log_path = var_dir / "keel_run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "keel_run", "--port", str(port), *args],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,  # as when started from a script, without a terminal
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = KeelStack(port=port, var_dir=var_dir, env=env, process=process, log_path=log_path, marker=marker)
    if wait:
        try:
            wait_until_healthy(stack)
        except BaseException:
            stack.kill_everything()
            raise
    return stack


def wait_until_healthy(stack: KeelStack, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2, trust_env=False) as client:
        while time.monotonic() < deadline:
            if stack.process.poll() is not None:
                raise AssertionError(
                    f"keel_run exited with {stack.process.returncode}:\n{stack.output()[-4000:]}"
                )
            try:
                if client.get(f"{stack.base_url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"/healthz did not answer within {timeout:.0f} s:\n{stack.output()[-4000:]}")
