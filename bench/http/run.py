"""Keel and Parse Server side by side over HTTP, with authentication on (run by hand).

    .venv/bin/python bench/http/run.py [--duration 10] [--parse-workers 2,1] [--fresh]

What it does, all on the loopback interface:

1. prepares two PostgreSQL databases: ``keel_bench`` (Keel, migrated) and
   ``keel_bench_parse`` (Parse Server's own tables);
2. seeds the same 10,000 rows on both (``category`` c0..c9, ``score``, a
   title and a flag) with an index usable by ``category = c3 order by score
   desc limit 20``: Keel's collection declares the composite index
   ``["category", "score"]``, Parse's table gets one on (category, score);
   every row is readable by one user only, through its ACL;
3. starts Keel as in production (gunicorn, 2 sync workers, ``config.wsgi``
   with ``config.settings.production``, DEBUG off, persistent connections,
   the Redis cache) and Parse Server 9 (bench/parse/server.js, installed with
   ``npm ci``): as a cluster of 2 processes (node's cluster module, what
   ``parse-server --cluster 2`` does) and as 1 process, on their own ports;
4. runs ``wrk -t2 -c32 -d10s --latency`` for each case on each server, one
   after the other in the same run: GET by id, the list of 20, and create;
   Keel with ``Authorization: Bearer <access token>``, Parse with
   ``X-Parse-Session-Token`` of the signed-in user;
5. prints one table (req/s and p99 per server) and writes the numbers as JSON.

Every run is bounded (wrk's duration; servers are stopped at the end, also
on Ctrl-C). The machine's load average is printed before and after: on a
shared machine, run it when the load is low (``--wait-quiet 1.5``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PARSE_DIR = ROOT / "bench" / "parse"
sys.path.insert(0, str(HERE))

from bench_rows import CREATED_CATEGORY, CREATED_ROW, rows  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432"
# Another database name lets an older checkout be measured beside this one.
KEEL_DB = os.environ.get("KEEL_BENCH_DB", "keel_bench")
PARSE_DB = "keel_bench_parse"
COLLECTION = "bench_items"
PARSE_CLASS = "BenchItem"
PARSE_APP_ID = "keel-bench"
PARSE_USER = "bench-reader"
PARSE_PASSWORD = "bench-reader-password-not-secret"  # a throwaway benchmark account
LIST_WHERE = {"category": "c3"}
CASES = ("get_by_id", "list_20", "create")


def log(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


# --- Databases ----------------------------------------------------------------


def _pg(dbname: str) -> Any:
    import psycopg

    return psycopg.connect(f"{PG}/{dbname}", autocommit=True)


def databases_prepare(*, fresh: bool, names: tuple[str, ...] = (KEEL_DB, PARSE_DB)) -> None:
    with _pg("postgres") as conn:
        for name in names:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if exists and fresh:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                exists = None
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
                log(f"created database {name}")


# --- Processes ----------------------------------------------------------------


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        # Each server runs in its own process group: stop it and its workers.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _start(
    name: str, command: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path, url: str
) -> Server:
    log_path = log_dir / f"{name}.log"
    handle = log_path.open("wb")
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Server(name=name, base_url=url, process=process, log_path=log_path)


def _wait_ready(server: Server, path: str, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited; see {server.log_path}")
        try:
            with urllib.request.urlopen(server.base_url + path, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"{server.name} did not answer {path} within {timeout:.0f} s; see {server.log_path}")


# --- HTTP helpers ---------------------------------------------------------------


def http(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- Keel -------------------------------------------------------------------


def keel_env(*, var_dir: Path, redis_url: str, port: int) -> dict[str, str]:
    from cryptography.fernet import Fernet

    (var_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_DEBUG": "false",
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
            # Plain HTTP on the loopback interface: no proxy in front to speak TLS.
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"{PG}/{KEEL_DB}",
            "REDIS_URL": redis_url,
            "KEEL_VAR_DIR": str(var_dir),
            # 1,200 requests a minute per user is the production default: a load
            # test of one user would only measure 429s. Parse has no such limit.
            "THROTTLE_RATE_USER": "",
            "THROTTLE_RATE_ANON": "",
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(var_dir / "prometheus"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def keel_manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def keel_seed(env: dict[str, str], *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(HERE / "keel_seed.py"), *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
    )
    result: dict[str, Any] = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    return result


def keel_start(env: dict[str, str], *, log_dir: Path, port: int) -> Server:
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    server = _start(
        "keel",
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "config.wsgi"],
        env=env,
        cwd=ROOT,
        log_dir=log_dir,
        url=f"http://127.0.0.1:{port}",
    )
    _wait_ready(server, "/healthz")
    return server


# --- Parse Server --------------------------------------------------------------


def parse_install() -> None:
    if (PARSE_DIR / "node_modules" / "parse-server").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed for Parse Server (bench/parse): install Node.js 20.19+ or 22.")
    log("installing Parse Server into bench/parse/node_modules (npm ci)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PARSE_DIR, check=True)


def parse_start(*, workers: int, port: int, master_key: str, log_dir: Path) -> Server:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for Parse Server.")
    logs = log_dir / f"parse-{workers}-files"
    logs.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PARSE_DATABASE_URI": f"postgres://postgres@127.0.0.1:5432/{PARSE_DB}",
        "PARSE_PORT": str(port),
        "PARSE_WORKERS": str(workers),
        "PARSE_APP_ID": PARSE_APP_ID,
        "PARSE_MASTER_KEY": master_key,
        "PARSE_LOGS_FOLDER": str(logs),
        # Read by Parse's default logger when the module loads, before the options apply.
        "PARSE_SERVER_LOGS_FOLDER": str(logs),
        "NODE_ENV": "production",
    }
    server = _start(
        f"parse-{workers}",
        [node, "server.js"],
        env=env,
        cwd=PARSE_DIR,
        log_dir=log_dir,
        url=f"http://127.0.0.1:{port}",
    )
    _wait_ready(server, "/parse/health")
    return server


def parse_headers(*, session: str | None = None, master_key: str | None = None) -> dict[str, str]:
    headers = {"X-Parse-Application-Id": PARSE_APP_ID}
    if session:
        headers["X-Parse-Session-Token"] = session
    if master_key:
        headers["X-Parse-Master-Key"] = master_key
    return headers


def parse_seed(server: Server, *, count: int, master_key: str) -> dict[str, Any]:
    base = f"{server.base_url}/parse"
    status, body = http(
        "POST",
        f"{base}/users",
        headers=parse_headers(),
        body={"username": PARSE_USER, "password": PARSE_PASSWORD},
    )
    if status != 201:
        status, body = http(
            "POST",
            f"{base}/login",
            headers=parse_headers(),
            body={"username": PARSE_USER, "password": PARSE_PASSWORD},
        )
    if status != 200 and status != 201:
        raise SystemExit(f"Parse sign-in failed: {status} {body[:200]!r}")
    user = json.loads(body)
    user_id, session = user["objectId"], user["sessionToken"]
    master = parse_headers(master_key=master_key)
    status, body = http(
        "POST",
        f"{base}/schemas/{PARSE_CLASS}",
        headers=master,
        body={
            "className": PARSE_CLASS,
            "fields": {
                "category": {"type": "String"},
                "score": {"type": "Number"},
                "title": {"type": "String"},
                "done": {"type": "Boolean"},
            },
        },
    )
    if status not in (200, 201) and b'"code":103' not in body:  # 103: the class exists
        raise SystemExit(f"Parse schema failed: {status} {body[:200]!r}")
    with _pg(PARSE_DB) as conn:
        conn.execute(
            f'CREATE INDEX IF NOT EXISTS bench_item_category_score ON "{PARSE_CLASS}" (category, score)'
        )
        conn.execute(f'DELETE FROM "{PARSE_CLASS}" WHERE category = %s', [CREATED_CATEGORY])
        (existing,) = conn.execute(f'SELECT count(*) FROM "{PARSE_CLASS}"').fetchone()
    acl = {user_id: {"read": True, "write": True}}
    wanted = rows(count)[existing:]

    # One request per object: Parse's /batch route fails with a 500 in 9.10.
    def create(data: dict[str, Any]) -> None:
        status, body = http(
            "POST", f"{base}/classes/{PARSE_CLASS}", headers=master, body={**data, "ACL": acl}
        )
        if status != 201:
            raise SystemExit(f"Parse create failed: {status} {body[:300]!r}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in pool.map(create, wanted):
            pass
    with _pg(PARSE_DB) as conn:
        conn.execute(f'ANALYZE "{PARSE_CLASS}"')
        (total,) = conn.execute(f'SELECT count(*) FROM "{PARSE_CLASS}"').fetchone()
    query = urllib.parse.urlencode({"where": json.dumps(LIST_WHERE), "order": "createdAt", "limit": 1})
    status, body = http(
        "GET", f"{base}/classes/{PARSE_CLASS}?{query}", headers=parse_headers(session=session)
    )
    first = json.loads(body)["results"][0]["objectId"]
    return {"user_id": user_id, "session": session, "object_id": first, "rows": total}


def parse_cleanup() -> None:
    with _pg(PARSE_DB) as conn:
        conn.execute(f'DELETE FROM "{PARSE_CLASS}" WHERE category = %s', [CREATED_CATEGORY])


# --- wrk ----------------------------------------------------------------------


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: Any = None
    expect_status: int = 200
    expect_results: int | None = None


@dataclass
class Measurement:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str
    response_bytes: int
    raw: str = field(repr=False, default="")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if match is None:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk_parse(output: str) -> tuple[float, float, float, int, str]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    non_2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors_match = re.search(r"Socket errors:(.*)", output)
    return (
        rps,
        p50,
        p99,
        int(non_2xx_match.group(1)) if non_2xx_match else 0,
        errors_match.group(1).strip() if errors_match else "",
    )


def check(request: Request) -> int:
    """One request outside wrk: the answer must be what the case expects (and its size)."""
    status, body = http(request.method, request.url, headers=request.headers, body=request.body)
    if status != request.expect_status:
        raise SystemExit(f"{request.method} {request.url} answered {status}: {body[:300]!r}")
    if request.expect_results is not None:
        results = json.loads(body)["results"]
        if len(results) != request.expect_results:
            raise SystemExit(f"{request.url} returned {len(results)} results, not {request.expect_results}")
    return len(body)


def wrk(request: Request, *, threads: int, connections: int, duration: int, work_dir: Path) -> Measurement:
    size = check(request)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for name, value in request.headers.items():
        command += ["-H", f"{name}: {value}"]
    env = dict(os.environ)
    if request.method != "GET":
        body_path = work_dir / "body.json"
        body_path.write_text(json.dumps(request.body))
        env["WRK_METHOD"] = request.method
        env["WRK_BODY_FILE"] = str(body_path)
        command += ["-s", str(HERE / "request.lua")]
    command.append(request.url)
    completed = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    rps, p50, p99, non_2xx, socket_errors = wrk_parse(completed.stdout)
    return Measurement(rps, p50, p99, non_2xx, socket_errors, size, completed.stdout)


# --- The run ----------------------------------------------------------------------


def wait_quiet(threshold: float, max_wait: int) -> None:
    deadline = time.monotonic() + max_wait
    while True:
        load = os.getloadavg()[0]
        if load < threshold:
            log(f"load average {load:.2f} < {threshold}")
            return
        if time.monotonic() >= deadline:
            log(f"load average still {load:.2f} after {max_wait} s; measuring anyway")
            return
        log(f"load average {load:.2f} >= {threshold}; waiting")
        time.sleep(60)


def keel_requests(base: str, token: str, document_id: str) -> dict[str, Request]:
    headers = {"Authorization": f"Bearer {token}"}
    documents = f"{base}/api/v1/collections/{COLLECTION}/documents"
    query = urllib.parse.urlencode(
        {"where": json.dumps({"data.category": LIST_WHERE["category"]}), "order": "-data.score", "limit": 20}
    )
    return {
        "get_by_id": Request("GET", f"{documents}/{document_id}", headers),
        "list_20": Request("GET", f"{documents}?{query}", headers, expect_results=20),
        "create": Request(
            "POST", documents, {**headers, "Content-Type": "application/json"}, {"data": CREATED_ROW}, 201
        ),
    }


def parse_requests(base: str, seeded: dict[str, Any]) -> dict[str, Request]:
    headers = parse_headers(session=seeded["session"])
    objects = f"{base}/parse/classes/{PARSE_CLASS}"
    query = urllib.parse.urlencode({"where": json.dumps(LIST_WHERE), "order": "-score", "limit": 20})
    acl = {seeded["user_id"]: {"read": True, "write": True}}
    return {
        "get_by_id": Request("GET", f"{objects}/{seeded['object_id']}", headers),
        "list_20": Request("GET", f"{objects}?{query}", headers, expect_results=20),
        "create": Request(
            "POST", objects, {**headers, "Content-Type": "application/json"}, {**CREATED_ROW, "ACL": acl}, 201
        ),
    }


def print_table(results: dict[str, dict[str, Measurement]], targets: list[str]) -> str:
    header = "| case (req/s, p99 ms) | " + " | ".join(targets) + " |"
    lines = [header, "|---" * (len(targets) + 1) + "|"]
    for case in CASES:
        cells = []
        for target in targets:
            found = results.get(target, {}).get(case)
            if found is None:
                cells.append("-")
                continue
            note = f" ({found.non_2xx} non-2xx)" if found.non_2xx else ""
            cells.append(f"{found.requests_per_second:,.0f}, {found.p99_ms:.0f}{note}")
        lines.append(f"| {case.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per case and server")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded load before each case")
    parser.add_argument(
        "--parse-workers",
        default="2,1",
        help="Parse Server setups to measure: processes of each (empty: none)",
    )
    parser.add_argument("--no-keel", action="store_true", help="measure Parse Server only")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--fresh", action="store_true", help="drop and recreate both databases first")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--keel-port", type=int, default=8111)
    parser.add_argument("--parse-port", type=int, default=1337, help="first port; one more per setup")
    parser.add_argument("--wait-quiet", type=float, default=0.0, help="wait for a 1-minute load below this")
    parser.add_argument("--wait-max", type=int, default=1800)
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the servers' logs (printed at the end)"
    )
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk).")
    cases = [case for case in args.cases.split(",") if case]
    workers = [int(n) for n in args.parse_workers.split(",") if n.strip()]
    work_dir = Path(tempfile.mkdtemp(prefix="keel-bench-http-"))
    servers: list[Server] = []
    results: dict[str, dict[str, Measurement]] = {}
    targets: list[str] = []
    started_load = os.getloadavg()
    try:
        databases_prepare(fresh=args.fresh)
        env = keel_env(var_dir=work_dir / "var", redis_url=args.redis_url, port=args.keel_port)
        keel_seeded: dict[str, Any] = {}
        if not args.no_keel:
            log("migrating keel_bench")
            try:
                keel_manage(env, "migrate", "--noinput", "-v", "0")
            except subprocess.CalledProcessError:
                # Migrations rewritten since the database was made: start it again.
                log("keel_bench does not follow the migrations; recreating it")
                databases_prepare(fresh=True, names=(KEEL_DB,))
                keel_manage(env, "migrate", "--noinput", "-v", "0")
            log(f"seeding Keel ({args.rows} documents)")
            keel_seeded = keel_seed(
                {**env, "CELERY_TASK_ALWAYS_EAGER": "true"}, "seed", "--rows", str(args.rows)
            )
            keel_seed(env, "cleanup")
            with _pg(KEEL_DB) as conn:
                conn.execute("ANALYZE content_document")
            log(f"Keel: {keel_seeded['documents']} documents, indexes {keel_seeded['indexes']}")
            servers.append(keel_start(env, log_dir=work_dir, port=args.keel_port))
            targets.append("Keel (gunicorn, 2 sync workers)")
        parse_servers: list[tuple[str, Server]] = []
        parse_seeded: dict[str, Any] = {}
        if workers:
            parse_install()
            master_key = secrets.token_urlsafe(32)
            for offset, count in enumerate(workers):
                server = parse_start(
                    workers=count, port=args.parse_port + offset, master_key=master_key, log_dir=work_dir
                )
                servers.append(server)
                label = f"Parse, cluster of {count}" if count > 1 else "Parse, 1 process"
                parse_servers.append((label, server))
                targets.append(label)
            log(f"seeding Parse Server ({args.rows} objects)")
            parse_seeded = parse_seed(parse_servers[0][1], count=args.rows, master_key=master_key)
            log(f"Parse: {parse_seeded['rows']} rows")
        if args.wait_quiet:
            wait_quiet(args.wait_quiet, args.wait_max)
        started_load = os.getloadavg()
        for case in cases:
            plan: list[tuple[str, Request]] = []
            if not args.no_keel:
                # A fresh access token per case: they live 5 minutes.
                token = keel_seed(env, "token")["access"]
                plan.append(
                    (targets[0], keel_requests(servers[0].base_url, token, keel_seeded["document_id"])[case])
                )
            for label, server in parse_servers:
                plan.append((label, parse_requests(server.base_url, parse_seeded)[case]))
            for label, request in plan:
                if args.warmup:
                    wrk(
                        request,
                        threads=args.threads,
                        connections=args.connections,
                        duration=args.warmup,
                        work_dir=work_dir,
                    )
                measured = wrk(
                    request,
                    threads=args.threads,
                    connections=args.connections,
                    duration=args.duration,
                    work_dir=work_dir,
                )
                results.setdefault(label, {})[case] = measured
                log(
                    f"{case:<10} {label:<34} {measured.requests_per_second:>8,.0f} req/s  "
                    f"p50 {measured.p50_ms:6.1f} ms  p99 {measured.p99_ms:6.1f} ms  "
                    f"{measured.response_bytes} B"
                    + (f"  non-2xx {measured.non_2xx}" if measured.non_2xx else "")
                )
            if case == "create":
                if not args.no_keel:
                    keel_seed(env, "cleanup")
                if parse_servers:
                    parse_cleanup()
        ended_load = os.getloadavg()
    finally:
        for server in reversed(servers):
            server.stop()
        if not args.keep_logs:
            shutil.rmtree(work_dir, ignore_errors=True)
    table = print_table(results, targets)
    sys.stdout.write(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rows} rows; "
        f"load average before {started_load[0]:.2f}, after {ended_load[0]:.2f}\n\n{table}\n"
    )
    if args.keep_logs:
        sys.stdout.write(f"\nserver logs: {work_dir}\n")
    if args.json:
        payload = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_before": started_load,
            "load_after": ended_load,
            "wrk": {"threads": args.threads, "connections": args.connections, "duration": args.duration},
            "results": {
                target: {
                    case: {k: v for k, v in vars(m).items() if k != "raw"} for case, m in by_case.items()
                }
                for target, by_case in results.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
