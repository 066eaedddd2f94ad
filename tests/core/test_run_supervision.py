"""``manage.py keel_run`` (what ``make run`` runs) as a supervisor: start, stop, crashes, restarts."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import BASE_DIR, KeelStack, poll_until, stack_environment, start_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc"),
]


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _child(stack: KeelStack, needle: str) -> int:
    """The process of the stack whose command line contains ``needle`` and whose parent is keel_run."""

    def find() -> int | None:
        for pid in stack.alive_processes():
            status = (Path("/proc") / str(pid) / "status").read_text()
            parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
            if parent == stack.process.pid and needle in _cmdline(pid):
                return pid
        return None

    pid: int = poll_until(find, timeout=30, what=f"the {needle} process")
    return pid


def _assert_all_gone(stack: KeelStack) -> None:
    poll_until(lambda: not stack.alive_processes(), timeout=30, what="every process of the stack exiting")


@pytest.fixture
def cleanup() -> list[KeelStack]:
    stacks: list[KeelStack] = []
    yield stacks
    for stack in stacks:
        if stack.process.poll() is None or stack.alive_processes():
            stack.kill_everything()


def test_sigint_stops_every_process_and_exits_zero(tmp_path, cleanup):
    stack = start_stack(tmp_path, args=("--no-setup",))
    cleanup.append(stack)
    worker = _child(stack, "celery")
    pool = poll_until(
        lambda: (
            [pid for pid in stack.alive_processes() if pid not in (stack.process.pid, worker)]
            and len(stack.alive_processes()) >= 4
        ),
        timeout=30,
        what="the worker's pool and beat processes",
    )
    assert pool
    assert "Keel is running on" in stack.output()
    assert "/api/docs/" in stack.output() and "/admin/" in stack.output()

    assert stack.stop(signal.SIGINT) == 0
    _assert_all_gone(stack)


def test_second_sigint_stops_at_once_without_waiting_for_the_worker(tmp_path, cleanup):
    stack = start_stack(tmp_path, args=("--no-setup",))
    cleanup.append(stack)
    _child(stack, "celery")

    stack.process.send_signal(signal.SIGINT)
    poll_until(lambda: "Stopping Keel" in stack.output(), timeout=10, what="the stop announcement")
    stack.process.send_signal(signal.SIGINT)

    # A warm worker shutdown takes several seconds; killing does not.
    stack.process.wait(timeout=5)
    assert stack.process.returncode == 0
    _assert_all_gone(stack)


def test_a_crashed_worker_stops_the_server_and_exits_non_zero(tmp_path, cleanup):
    stack = start_stack(tmp_path, args=("--no-setup",))
    cleanup.append(stack)
    worker = _child(stack, "celery")

    # SIGKILL gives the worker no chance to stop its pool: keel_run must.
    subprocess.run(["kill", "-KILL", str(worker)], check=True)

    stack.process.wait(timeout=60)
    assert stack.process.returncode != 0
    assert "worker exited" in stack.output()
    _assert_all_gone(stack)


def test_a_crashed_server_stops_the_worker_and_exits_non_zero(tmp_path, cleanup):
    stack = start_stack(tmp_path, args=("--no-setup",))
    cleanup.append(stack)
    server = _child(stack, "uvicorn")

    subprocess.run(["kill", "-KILL", str(server)], check=True)

    stack.process.wait(timeout=60)
    assert stack.process.returncode != 0
    assert "web exited" in stack.output()
    _assert_all_gone(stack)


def test_children_die_with_a_killed_supervisor(tmp_path, cleanup):
    stack = start_stack(tmp_path, args=("--no-setup",))
    cleanup.append(stack)
    _child(stack, "celery")
    _child(stack, "uvicorn")

    stack.process.kill()
    stack.process.wait(timeout=10)

    _assert_all_gone(stack)


def test_port_in_use_is_a_clear_error_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        marker = uuid.uuid4().hex
        env = {**stack_environment(tmp_path), "KEEL_STACK_TEST_MARKER": marker}
        completed = subprocess.run(
            [sys.executable, "manage.py", "keel_run", "--no-setup", "--port", str(port)],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert completed.returncode != 0
    assert f"Port {port}" in completed.stderr and "PORT" in completed.stderr
    assert "Keel is running" not in completed.stdout


def test_restart_keeps_data_and_prints_the_staff_password_only_once(tmp_path, cleanup):
    # Without the worker: what must survive lives in KEEL_VAR_DIR, and the
    # stack stops faster without waiting for a warm worker shutdown.
    first = start_stack(tmp_path, args=("--no-worker",))
    cleanup.append(first)
    with first.http() as client:
        registered = client.post(
            "/api/v1/auth/register",
            json={
                "email": "kept@example.com",
                "password": "a long and unguessable passphrase 7",
                "device": {"device_id": "restart-test", "name": "Phone", "platform": "ios"},
            },
        )
    assert registered.status_code == 201, registered.text
    assert "password:" in first.output()
    assert first.stop() == 0

    second = start_stack(tmp_path, args=("--no-worker",))
    cleanup.append(second)
    try:
        assert "password:" not in second.output()
        assert "Staff login: admin@keel.local" in second.output()
        with httpx.Client(base_url=second.base_url, trust_env=False, timeout=30) as client:
            me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {registered.json()['access']}"})
        assert me.status_code == 200, me.text
        assert me.json()["email"] == "kept@example.com"
    finally:
        assert second.stop() == 0
    _assert_all_gone(second)
