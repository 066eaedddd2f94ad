"""``make run``: migrate, add demo data, and serve HTTP + WebSocket with a real worker.

One foreground process supervises two children: uvicorn serving
``config.asgi`` (HTTP and ``/ws/v1/``) and a Celery worker with an embedded
beat. Each child runs in its own process group, so stopping it also stops
what it started (the worker's pool processes, beat). Ctrl-C, SIGTERM or
SIGHUP stop both and the command exits 0; if a child dies on its own, the
other is stopped too and the command exits non-zero, so a script or CI never
waits on half a stack. On Linux the children also die with this process when
it is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 15.0
POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


# Straight to our own port, whatever HTTP(S)_PROXY the environment sets.
_LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(url: str) -> bool:
    try:
        with _LOCAL_OPENER.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - displaying, not binding
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class Command(BaseCommand):
    help = "Set up and serve Keel (HTTP, WebSocket, background jobs) for development."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-worker", action="store_true", help="Do not start the Celery worker.")
        parser.add_argument("--no-setup", action="store_true", help="Skip migrations and demo data.")
        parser.add_argument(
            "--worker-concurrency",
            type=int,
            default=1,
            help="Worker pool processes (prefork, so time limits are enforced as in production).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        if _port_in_use(host, port):
            raise CommandError(f"Port {port} on {host} is already in use; set PORT to another one.")

        self._stop_signal = 0
        self._stop_requests = 0
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._request_stop)

        if not options["no_setup"]:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("seed_demo", stdout=self.stdout)
            self.stdout.flush()

        if self._stop_signal:
            return
        env = self._child_env()
        children: list[Child] = []
        try:
            children.append(self._start("web", self._server_command(host, port), env))
            if not options["no_worker"]:
                children.append(self._start("worker", self._worker_command(options), env))
            exit_code = self._wait_until_serving(children, host, port)
            if exit_code is None:
                self._announce(host, port, worker=not options["no_worker"])
                exit_code = self._supervise(children)
        finally:
            _stop_all(children, hurry=lambda: self._stop_requests > 1)
        if exit_code:
            raise SystemExit(exit_code)

    # --- children ----------------------------------------------------------

    def _request_stop(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum
        self._stop_requests += 1

    @staticmethod
    def _child_env() -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local"),
            "PYTHONUNBUFFERED": "1",
        }
        if "LOG_FORMAT" not in os.environ and sys.stdout.isatty():
            env["LOG_FORMAT"] = "console"
        return env

    @staticmethod
    def _server_command(host: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            host,
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",  # the access log is Keel's own, one structured line per request
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "5",
        ]

    @staticmethod
    def _worker_command(options: dict[str, Any]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--beat",
            "--schedule",
            settings.CELERY_BEAT_SCHEDULE_FILENAME,
            "--pool",
            "prefork",
            "--concurrency",
            str(max(1, options["worker_concurrency"])),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"keel-run-{os.getpid()}@%h",
        ]

    @staticmethod
    def _start(name: str, command: list[str], env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            command,
            env=env,
            # Never hand our stdin (a terminal, or nothing at all when started
            # from a script) to the children.
            stdin=subprocess.DEVNULL,
            # Own process group: a terminal's Ctrl-C reaches only this
            # supervisor, which stops the children in order, and stopping a
            # child's group also stops its own children.
            start_new_session=True,
            # Safe here: the supervisor has started no threads.
            preexec_fn=_die_with_parent(),
        )
        return Child(name=name, process=process)

    # --- lifecycle ---------------------------------------------------------

    def _wait_until_serving(self, children: list[Child], host: str, port: int) -> int | None:
        """Poll ``/healthz`` until it answers; a non-None result is the exit code to stop with."""
        url = f"http://{_url_host(host)}:{port}/healthz"
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._stop_signal:
                return 0
            dead = self._first_dead(children)
            if dead is not None:
                self.stderr.write(
                    f"Keel {dead.name} exited during start-up (code {dead.process.returncode})."
                )
                return dead.process.returncode or 1
            if _healthy(url):
                return None
            time.sleep(POLL_SECONDS)
        self.stderr.write(f"Keel did not answer {url} within {STARTUP_TIMEOUT_SECONDS:.0f} s; stopping.")
        return 1

    def _announce(self, host: str, port: int, *, worker: bool) -> None:
        base = f"http://{_url_host(host)}:{port}"
        lines = [
            "",
            f"Keel is running on {base}",
            f"  API docs:   {base}/api/docs/",
            f"  Admin:      {base}/admin/",
            f"  Health:     {base}/healthz",
            f"  WebSocket:  ws://{_url_host(host)}:{port}/ws/v1/",
        ]
        if worker:
            lines.append(f"  Jobs:       Celery worker with beat (broker {_broker_label()})")
        lines += ["Press Ctrl-C to stop.", ""]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def _supervise(self, children: list[Child]) -> int:
        while not self._stop_signal:
            dead = self._first_dead(children)
            if dead is not None:
                self.stderr.write(f"Keel {dead.name} exited (code {dead.process.returncode}); stopping.")
                return dead.process.returncode or 1
            time.sleep(POLL_SECONDS)
        self.stdout.write("Stopping Keel: running jobs finish first; press Ctrl-C again to stop at once.")
        self.stdout.flush()
        return 0

    @staticmethod
    def _first_dead(children: list[Child]) -> Child | None:
        return next((child for child in children if not child.running), None)


def _broker_label() -> str:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        return "files under KEEL_VAR_DIR"
    return url.split("://", 1)[0]


def _signal_group(child: Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signum)


def _group_alive(child: Child) -> bool:
    try:
        os.killpg(child.process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_all(
    children: list[Child], grace: float = STOP_GRACE_SECONDS, hurry: Callable[[], bool] = lambda: False
) -> None:
    """Stop every child and everything it started, within ``grace`` seconds.

    SIGTERM goes to each child itself first: uvicorn and the Celery worker
    shut down their own helpers cleanly (signalling a worker's pool processes
    directly only makes it replace them). What is still alive in a child's
    process group afterwards is terminated, then killed. When ``hurry()``
    turns true (a second Ctrl-C), everything is killed at once.
    """
    for child in children:
        if child.running:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(child.running for child in children) and time.monotonic() < deadline:
        if hurry():
            for child in children:
                _signal_group(child, signal.SIGKILL)
            break
        time.sleep(POLL_SECONDS / 2)
    for child in children:
        if child.running or _group_alive(child):
            _signal_group(child, signal.SIGTERM)
    leftovers_deadline = min(deadline, time.monotonic() + 2.0)
    while any(_group_alive(child) for child in children) and time.monotonic() < leftovers_deadline:
        time.sleep(POLL_SECONDS / 2)
    for child in children:
        if _group_alive(child):
            _signal_group(child, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=5)
