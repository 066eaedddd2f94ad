"""Realtime across processes with Redis: two uvicorn servers and a Celery worker, as in production.

A write through one server reaches sockets on the other; presence and
broadcasts cross processes; when a server dies, its room members expire for
the others and the surviving server takes over relaying.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.keel_realtime import RealtimeClient
from tests.e2e.stack import (
    BASE_DIR,
    MARKER_VARIABLE,
    free_port,
    poll_until,
    processes_with_marker,
    stack_environment,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

PASSWORD = "a long and unguessable passphrase 7"


@dataclass
class Cluster:
    env: dict[str, str]
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path
    marker: str

    def url(self, server: str) -> str:
        return f"http://127.0.0.1:{self.ports[server]}"

    def ws_url(self, server: str) -> str:
        return f"ws://127.0.0.1:{self.ports[server]}/ws/v1/"

    def manage(self, *args: str) -> str:
        completed = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return completed.stdout

    def kill(self, name: str) -> None:
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def output(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs.glob("*.log"))
        )


def _start(cluster: Cluster, name: str, command: list[str]) -> None:
    log = (cluster.logs / f"{name}.log").open("wb")
    cluster.processes[name] = subprocess.Popen(
        command,
        cwd=BASE_DIR,
        env=cluster.env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _server(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    var_dir = tmp_path_factory.mktemp("keel-realtime-cluster")
    marker = uuid.uuid4().hex
    env = stack_environment(
        var_dir,
        {
            "REDIS_URL": os.environ["REDIS_URL"],
            "DATABASE_URL": f"sqlite:///{var_dir / 'keel.sqlite3'}",
            "REALTIME_REDIS_PREFIX": f"keel:e2e:{marker[:8]}:",
            "REALTIME_RELAY_LEASE_SECONDS": "2",
            "REALTIME_PRESENCE_TTL_SECONDS": "2",
            MARKER_VARIABLE: marker,
        },
    )
    cluster = Cluster(
        env=env, ports={"a": free_port(), "b": free_port()}, processes={}, logs=var_dir, marker=marker
    )
    cluster.manage("migrate", "--noinput", "--verbosity", "0")
    try:
        _start(cluster, "a", _server(cluster.ports["a"]))
        _start(cluster, "b", _server(cluster.ports["b"]))
        _start(
            cluster,
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
            ],
        )
        with httpx.Client(timeout=2, trust_env=False) as client:
            for server in ("a", "b"):

                def healthy(server: str = server) -> bool:
                    try:
                        return client.get(f"{cluster.url(server)}/healthz").status_code == 200
                    except httpx.TransportError:
                        return False

                poll_until(healthy, timeout=120, what=f"server {server} answering /healthz")
        poll_until(lambda: "ready" in (var_dir / "worker.log").read_text(), timeout=120, what="the worker")
        cluster.manage(
            "shell",
            "--command",
            "from apps.content.services.collections import collection_save\n"
            "collection_save(definition={'name': 'notes', 'schema': {'type': 'object'}, "
            "'default_acl': {'authenticated': 'read'}, 'create_permission': 'authenticated'})\n",
        )
        yield cluster
    finally:
        for process in cluster.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in cluster.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for pid in processes_with_marker(marker):
            os.kill(pid, signal.SIGKILL)


def register(cluster: Cluster, server: str) -> dict[str, Any]:
    body = {
        "email": f"cluster-{uuid.uuid4().hex[:10]}@example.com",
        "password": PASSWORD,
        "device": {"device_id": uuid.uuid4().hex, "name": "E2E phone", "platform": "android"},
    }
    with httpx.Client(base_url=cluster.url(server), timeout=30, trust_env=False) as client:
        response = client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def post_note(
    cluster: Cluster, server: str, account: dict[str, Any], title: str, request_id: str
) -> dict[str, Any]:
    with httpx.Client(base_url=cluster.url(server), timeout=30, trust_env=False) as client:
        response = client.post(
            "/api/v1/collections/notes/documents",
            json={"data": {"title": title}},
            headers={"Authorization": f"Bearer {account['access']}", "X-Request-ID": request_id},
        )
    assert response.status_code == 201, response.text
    return response.json()


def created(subscription: Any, document_id: str) -> Any:
    return lambda frame: (
        frame.get("type") == "event"
        and frame.get("sub") == subscription.id
        and frame["document"]["id"] == document_id
    )


def test_two_servers_and_a_worker_share_events_presence_and_the_relay(cluster):
    alice, bob = register(cluster, "a"), register(cluster, "b")
    on_a = RealtimeClient(cluster.ws_url("a"), token_provider=lambda: alice["access"])
    on_b = RealtimeClient(cluster.ws_url("b"), token_provider=lambda: bob["access"])
    on_a.connect()
    on_b.connect()
    try:
        live_a = on_a.subscribe("collection:notes")
        live_b = on_b.subscribe("collection:notes")

        # A write through server A reaches the socket on server B (and A's own).
        note = post_note(cluster, "a", alice, "written on A", "cluster-write-1")
        event = on_b.expect(created(live_b, note["id"]), timeout=15)
        assert event["event"] == "created" and event["request_id"] == "cluster-write-1"
        on_a.expect(created(live_a, note["id"]), timeout=15)

        # An event published by another process (a job, a command) reaches B too.
        me = on_b.subscribe("user:me")
        cluster.manage(
            "shell",
            "--command",
            "from apps.realtime.services import event_publish\n"
            f"event_publish(topic='user:{bob['user']['id']}', event='hello', payload={{'from': 'a job'}})\n",
        )
        assert on_b.events(me, timeout=15)["payload"] == {"from": "a job"}

        # Presence and broadcasts cross processes.
        on_a.join("war-room", {"where": "a"})
        joined = on_b.join("war-room", {"where": "b"})
        assert set(joined["presence"]) == {on_a.connection_id, on_b.connection_id}
        on_a.expect(lambda f: f.get("type") == "presence" and on_b.connection_id in f["joins"], timeout=15)
        on_b.broadcast("war-room", "wave", {"hi": "from b"})
        waved = on_a.expect(lambda f: f.get("type") == "broadcast", timeout=15)
        assert waved["from"]["connection_id"] == on_b.connection_id

        # Server A dies: its member leaves B's room by expiry, and B relays on its own.
        cluster.kill("a")
        left = on_b.expect(
            lambda f: f.get("type") == "presence" and on_a.connection_id in f["leaves"], timeout=20
        )
        assert left["leaves"][on_a.connection_id]["state"] == {"where": "a"}
        after = post_note(cluster, "b", bob, "written after A died", "cluster-write-2")
        assert on_b.expect(created(live_b, after["id"]), timeout=20)["request_id"] == "cluster-write-2"
    except BaseException:
        print(cluster.output())
        raise
    finally:
        on_b.close()
        on_a.close()
    assert cluster.processes["worker"].poll() is None and cluster.processes["b"].poll() is None
