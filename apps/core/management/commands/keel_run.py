"""``make run``: migrate, add demo data, and serve HTTP + WebSocket with a real worker.

One foreground process supervises two children: uvicorn serving
``config.asgi`` (HTTP and ``/ws/v1/``) and a Celery worker with an embedded
beat. Ctrl-C or SIGTERM stops both; if either dies, the other is stopped too
and the command exits non-zero, so a script or CI never waits on half a stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Set up and serve Keel (HTTP, WebSocket, background jobs) for development."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-worker", action="store_true", help="Do not start the Celery worker.")
        parser.add_argument("--no-setup", action="store_true", help="Skip migrations and demo data.")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        if not options["no_setup"]:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("seed_demo")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local"),
        }
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        server_cmd = [
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
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        children.append(("web", subprocess.Popen(server_cmd, env=env)))
        if not options["no_worker"]:
            worker_cmd = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--beat",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
                "--hostname",
                f"keel-run-{os.getpid()}@%h",
            ]
            children.append(("worker", subprocess.Popen(worker_cmd, env=env)))

        base = f"http://{host}:{port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Keel is running on {base}",
                    f"  API docs:   {base}/api/docs/",
                    f"  Admin:      {base}/admin/",
                    f"  Health:     {base}/healthz",
                    f"  WebSocket:  ws://{host}:{port}/ws/v1/",
                    "Press Ctrl-C to stop.",
                    "",
                ]
            )
        )
        self.stdout.flush()

        stopping = {"signal": 0}

        def _stop(signum: int, _frame: Any) -> None:
            stopping["signal"] = signum

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)

        exit_code = 0
        while not stopping["signal"]:
            dead = [(name, proc) for name, proc in children if proc.poll() is not None]
            if dead:
                name, proc = dead[0]
                self.stderr.write(f"{name} exited with code {proc.returncode}; stopping Keel.")
                exit_code = proc.returncode or 1
                break
            time.sleep(0.2)
        _terminate(children)
        if exit_code:
            raise SystemExit(exit_code)


def _terminate(children: list[tuple[str, subprocess.Popen[bytes]]], grace: float = 10.0) -> None:
    for _name, proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _name, proc in children:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
