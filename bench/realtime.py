"""Benchmark of the realtime server in its production shape (run by hand, not in CI).

It starts the production processes itself on PostgreSQL and Redis:
gunicorn (sync workers, ``config.wsgi``) for the HTTP API and uvicorn
(``config.asgi``, ``--workers``) for ``/ws/v1/``, in a database of its own,
then measures from one client process:

1. **idle sockets**: N authenticated sockets held open; the servers' resident
   memory before and after, per socket;
2. **fan-out latency**: S sockets subscribed to one collection; documents
   written over HTTP one at a time; for each, the time from its commit (the
   document's ``updated_at``, stamped just before commit) until the *last*
   subscriber received the event; p50 and p99;
3. **throughput**: a burst of writes from several HTTP clients at once;
   event frames delivered per second until every subscriber had every event.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/10 \\
        .venv/bin/python bench/realtime.py --idle 10000 --subscribers 1000 --writes 200 --burst 200

The client runs on the same machine and competes for the same cores; the
numbers are what this machine does with everything on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg
from websockets.asyncio.client import connect

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE = "keel_bench_realtime"
COLLECTION = {
    "name": "bench_feed",
    "schema": {"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}}},
    "default_acl": {"authenticated": "read"},
    "create_permission": "authenticated",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def family(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def memory_kib(root: int) -> int:
    return sum(rss_kib(pid) for pid in family(root))


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """User and system CPU time of ``root`` and its children so far."""
    total = 0
    for pid in family(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class Servers:
    def __init__(self, args: argparse.Namespace) -> None:
        admin = os.environ["DATABASE_URL"]
        parsed = urlparse(admin)
        self.admin_url = urlunparse(parsed._replace(path="/postgres"))
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
        self.var_dir = Path(tempfile.mkdtemp(prefix="keel-bench-rt-"))
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "DATABASE_URL": urlunparse(parsed._replace(path=f"/{DATABASE}")),
            "REDIS_URL": os.environ["REDIS_URL"],
            "REALTIME_REDIS_PREFIX": f"keel:bench:{uuid.uuid4().hex[:6]}:",
            "KEEL_VAR_DIR": str(self.var_dir),
            "LOG_LEVEL": "WARNING",
            "THROTTLE_RATE_USER": "",
            "THROTTLE_RATE_AUTH_REGISTER": "1000/min",
            "PROMETHEUS_MULTIPROC_DIR": str(self.var_dir / "metrics"),
        }
        (self.var_dir / "metrics").mkdir()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=BASE_DIR,
            env=self.env,
            check=True,
        )
        self.http_port, self.ws_port = free_port(), free_port()
        log = (self.var_dir / "servers.log").open("wb")
        self.gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi", "--bind",
             f"127.0.0.1:{self.http_port}", "--workers", str(args.http_workers)],
            cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.uvicorn = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port",
             str(self.ws_port), "--workers", str(args.ws_workers), "--lifespan", "off", "--no-access-log",
             "--log-level", "warning", "--ws-ping-interval", "0",
             *([] if args.server_deflate else ["--ws-per-message-deflate", "False"])],
            cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        for port in (self.http_port, self.ws_port):
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit((self.var_dir / "servers.log").read_text()[-3000:])
                time.sleep(0.3)
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c",
             "from apps.content.services.collections import collection_save\n"
             f"collection_save(definition={COLLECTION!r})"],
            cwd=BASE_DIR, env=self.env, check=True,
        )  # fmt: skip

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws/v1/"

    def stop(self) -> None:
        for process in (self.uvicorn, self.gunicorn):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in (self.uvicorn, self.gunicorn):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def register(servers: Servers) -> dict[str, Any]:
    body = {
        "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
        "password": "a long and unguessable passphrase 7",
        "device": {"device_id": uuid.uuid4().hex, "name": "bench", "platform": "android"},
    }
    response = httpx.post(f"http://127.0.0.1:{servers.http_port}/api/v1/auth/register", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


async def open_sockets(
    url: str, token: str, count: int, *, deflate: bool = True, concurrency: int = 200
) -> list[Any]:
    sockets: list[Any] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            ws = await connect(
                url,
                open_timeout=60,
                ping_interval=None,
                max_queue=None,
                compression="deflate" if deflate else None,
            )
            await ws.send(json.dumps({"type": "auth", "token": token}))
            ready = json.loads(await ws.recv())
            assert ready["type"] == "ready", ready
            sockets.append(ws)

    await asyncio.gather(*(one() for _ in range(count)))
    return sockets


async def idle_phase(servers: Servers, token: str, count: int, *, deflate: bool) -> dict[str, Any]:
    await asyncio.sleep(2)
    before = memory_kib(servers.uvicorn.pid)
    started = time.monotonic()
    sockets = await open_sockets(servers.ws_url, token, count, deflate=deflate)
    opened = time.monotonic() - started
    await asyncio.sleep(5)  # let the servers settle (lazy allocations, GC)
    after = memory_kib(servers.uvicorn.pid)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {
        "sockets": count,
        "permessage_deflate": deflate,
        "open_seconds": round(opened, 1),
        "server_rss_before_mib": round(before / 1024, 1),
        "server_rss_after_mib": round(after / 1024, 1),
        "kib_per_socket": round((after - before) / count, 1),
    }


class Subscribers:
    def __init__(self, sockets: list[Any]) -> None:
        self.sockets = sockets
        self.arrivals: dict[str, list[float]] = {}
        self.frames = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for index, ws in enumerate(self.sockets):
            await ws.send(
                json.dumps({"type": "subscribe", "id": f"s{index}", "topic": "collection:bench_feed"})
            )
        for ws in self.sockets:
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
        self.tasks = [asyncio.get_running_loop().create_task(self._read(ws)) for ws in self.sockets]

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            now = time.time()
            frame = json.loads(raw)
            if frame.get("type") != "event":
                continue
            self.frames += 1
            self.arrivals.setdefault(frame["document"]["id"], []).append(now)

    async def wait_for(self, document_ids: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        wanted = len(self.sockets)
        while time.monotonic() < deadline:
            if all(len(self.arrivals.get(doc, ())) >= wanted for doc in document_ids):
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("not every subscriber got every event")


async def write(client: httpx.AsyncClient, token: str, n: int) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/collections/bench_feed/documents",
        json={"data": {"title": f"event {n}", "n": n}},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def committed_at(document: dict[str, Any]) -> float:
    return datetime.fromisoformat(document["updated_at"].replace("Z", "+00:00")).timestamp()


async def fanout_phase(
    servers: Servers, token: str, subscribers: int, writes: int, burst: int, *, deflate: bool
) -> dict[str, Any]:
    sockets = await open_sockets(servers.ws_url, token, subscribers, deflate=deflate)
    audience = Subscribers(sockets)
    await audience.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{servers.http_port}", timeout=30) as client:
        # Latency: one write at a time, each fan-out finished before the next.
        latencies = []
        for n in range(writes):
            document = await write(client, token, n)
            await audience.wait_for([document["id"]])
            latencies.append(max(audience.arrivals[document["id"]]) - committed_at(document))
        # Throughput: a burst from 4 concurrent writers.
        frames_before = audience.frames
        cpu_before = (cpu_seconds(servers.uvicorn.pid), cpu_seconds(servers.gunicorn.pid), own_cpu_seconds())
        started = time.monotonic()
        documents: list[dict[str, Any]] = []

        async def writer(offset: int) -> None:
            for n in range(offset, burst, 4):
                documents.append(await write(client, token, 100_000 + n))

        await asyncio.gather(*(writer(offset) for offset in range(4)))
        written = time.monotonic() - started
        await audience.wait_for([document["id"] for document in documents], timeout=600)
        elapsed = time.monotonic() - started
        delivered = audience.frames - frames_before
        cpu_after = (cpu_seconds(servers.uvicorn.pid), cpu_seconds(servers.gunicorn.pid), own_cpu_seconds())
    for task in audience.tasks:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "subscribers": subscribers,
        "latency_writes": writes,
        "latency_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "latency_max_ms": round(max(latencies) * 1000, 1),
        "latency_mean_ms": round(statistics.mean(latencies) * 1000, 1),
        "burst_writes": burst,
        "burst_write_seconds": round(written, 2),
        "burst_delivery_seconds": round(elapsed, 2),
        "frames_delivered": delivered,
        "frames_per_second": round(delivered / elapsed),
        "writes_per_second": round(burst / elapsed, 1),
        "burst_cpu_seconds": {
            "uvicorn": round(cpu_after[0] - cpu_before[0], 1),
            "gunicorn": round(cpu_after[1] - cpu_before[1], 1),
            "client": round(cpu_after[2] - cpu_before[2], 1),
        },
    }


async def main(args: argparse.Namespace) -> None:
    servers = Servers(args)
    try:
        account = register(servers)
        token = account["access"]
        results: dict[str, Any] = {
            "ws_workers": args.ws_workers,
            "http_workers": args.http_workers,
            "client_deflate": args.deflate,
            "server_deflate": args.server_deflate,
        }
        if args.idle:
            results["idle"] = await idle_phase(servers, token, args.idle, deflate=args.deflate)
            print(json.dumps(results["idle"]), flush=True)
        if args.subscribers:
            results["fanout"] = await fanout_phase(
                servers, token, args.subscribers, args.writes, args.burst, deflate=args.deflate
            )
            print(json.dumps(results["fanout"]), flush=True)
        print(json.dumps(results, indent=2))
    finally:
        servers.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=10_000, help="idle sockets to hold (0: skip)")
    parser.add_argument(
        "--subscribers", type=int, default=1_000, help="subscribers of one collection (0: skip)"
    )
    parser.add_argument("--writes", type=int, default=200, help="writes measured one at a time")
    parser.add_argument("--burst", type=int, default=200, help="writes in the throughput burst")
    parser.add_argument("--ws-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--http-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument(
        "--deflate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="clients offer permessage-deflate, as most WebSocket libraries do",
    )
    parser.add_argument(
        "--server-deflate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="uvicorn accepts permessage-deflate (its default); off: --ws-per-message-deflate False",
    )
    asyncio.run(main(parser.parse_args()))
