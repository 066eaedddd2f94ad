"""Dockerfile, deploy/compose.yml and the proxy config, checked without a container engine.

The compose file must parse and name the services; the processes it starts
must exist in the project; the proxy must route /ws/ to the WebSocket
process; the Dockerfile must be multi-stage, non-root, without build tools in
the final image, and copy only what exists.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
APP_SERVICES = ("web", "ws", "worker", "beat")
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make ", "libpq-dev", "python3-dev")


# --- Parsing helpers ----------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yml").read_text())


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages() -> list[dict]:
    """The build stages: name, base image and instructions of each."""
    result: list[dict] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            parts = arguments.split()
            name = parts[parts.index("AS") + 1] if "AS" in parts else None
            result.append({"base": parts[0], "name": name, "instructions": []})
        elif result:
            result[-1]["instructions"].append((keyword, arguments))
    return result


def module_defines(module: str, name: str) -> bool:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} does not exist"
    tree = ast.parse(Path(spec.origin).read_text())
    return any(
        isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        for node in tree.body
    )


def caddy_blocks(text: str) -> list[tuple[str, str]]:
    """``(header, body)`` of every ``{ ... }`` block at any depth (Caddyfile syntax)."""
    text = re.sub(r"(?m)^\s*#.*$", "", text)
    blocks, stack = [], []
    for index, char in enumerate(text):
        if char == "{" and not re.match(r"\$", text[index + 1 : index + 2] or ""):
            line_start = text.rfind("\n", 0, index) + 1
            stack.append((text[line_start:index].strip(), index + 1))
        elif char == "}" and stack and not re.search(r"\{\$[^}]*$", text[:index]):
            header, start = stack.pop()
            blocks.append((header, text[start:index]))
    assert not stack, "unbalanced braces in the Caddyfile"
    return blocks


# --- compose.yml ----------------------------------------------------------------


def test_compose_names_every_service():
    services = compose()["services"]

    assert {"web", "ws", "worker", "beat", "postgres", "redis", "minio", "minio-setup", "proxy"} <= set(
        services
    )
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["minio"]["image"].startswith("minio/minio")


def test_app_services_run_the_image_built_from_the_dockerfile():
    services = compose()["services"]
    images = set()

    for name in (*APP_SERVICES, "migrate"):
        service = services[name]
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == ROOT / "Dockerfile", name
        images.add(service["image"])
        assert service.get("init") is True, f"{name}: signals need an init process as PID 1"

    assert len(images) == 1


def test_app_commands_name_modules_that_exist():
    services = compose()["services"]

    web = command_of(services["web"])
    assert web[0] == "gunicorn"
    assert (ROOT / web[web.index("-c") + 1]).is_file()
    assert web[-1] == "config.wsgi" and module_defines("config.wsgi", "application")

    ws = command_of(services["ws"])
    assert ws[0] == "uvicorn"
    module, attribute = ws[1].split(":")
    assert (module, attribute) == ("config.asgi", "application") and module_defines(module, attribute)
    assert 1 <= int(re.sub(r"\$\{WS_WORKERS:-(\d+)\}", r"\1", ws[ws.index("--workers") + 1])) <= 2

    for name, role in (("worker", "worker"), ("beat", "beat")):
        command = command_of(services[name])
        assert command[:2] == ["celery", "-A"], name
        assert command[2] == "config" and module_defines("config.celery", "app"), name
        assert command[3] == role

    migrate = command_of(services["migrate"])
    assert migrate[:3] == ["python", "manage.py", "migrate"]


def test_app_services_share_one_production_environment():
    services = compose()["services"]
    from tests.core.test_settings_production import sane_env

    required = {
        key for key in sane_env(Path("/nonexistent")) if key.startswith(("DJANGO_", "FIELD_", "BLIND_"))
    }
    environments = [services[name]["environment"] for name in (*APP_SERVICES, "migrate")]
    for environment in environments:
        assert environment["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
        assert required <= set(environment), required - set(environment)
        assert (
            environment["DATABASE_URL"].startswith("postgres://")
            and "@postgres:5432/" in environment["DATABASE_URL"]
        )
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["AWS_STORAGE_BUCKET_NAME"]
    shared = {
        key: value for key, value in environments[0].items() if key != "PORT" and key != "WEB_CONCURRENCY"
    }
    for environment in environments[1:]:
        assert {k: v for k, v in environment.items() if k in shared} == shared
    # Secrets are never written into the file: compose refuses to start without them.
    assert environments[0]["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")


def test_long_running_services_have_healthchecks_and_wait_for_healthy_dependencies():
    services = compose()["services"]

    for name in (*APP_SERVICES, "postgres", "redis", "minio", "proxy"):
        assert services[name]["healthcheck"]["test"], name
        assert not services[name]["healthcheck"].get("disable"), name
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["minio-setup"]["condition"] == "service_completed_successfully"
    assert services["minio-setup"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["ws"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "8001/healthz" in " ".join(services["ws"]["healthcheck"]["test"])


def test_the_bucket_is_created_once_by_a_one_shot_service():
    setup = compose()["services"]["minio-setup"]

    script = " ".join(setup["command"])
    assert "mc mb --ignore-existing" in script
    assert setup["restart"] == "no"


def test_named_volumes_are_declared():
    document = compose()
    declared = set(document["volumes"])
    used = {
        volume.split(":")[0]
        for service in document["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }

    assert used and used <= declared
    for service in document["services"].values():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (DEPLOY / volume.split(":")[0]).exists(), volume


# --- The reverse proxy --------------------------------------------------------


def test_proxy_routes_websockets_to_ws_and_everything_else_to_web():
    services = compose()["services"]
    proxy = services["proxy"]
    mounted = {volume.split(":")[0]: volume.split(":")[1] for volume in proxy["volumes"]}
    assert mounted["./Caddyfile"] == "/etc/caddy/Caddyfile"
    blocks = caddy_blocks((DEPLOY / "Caddyfile").read_text())

    ws_port = command_of(services["ws"])[command_of(services["ws"]).index("--port") + 1]
    web_port = services["web"]["environment"]["PORT"]
    handles = {header: body for header, body in blocks if header.startswith("handle")}
    assert "handle /ws/*" in handles
    assert re.search(rf"\breverse_proxy\s+ws:{ws_port}\b", handles["handle /ws/*"])
    assert re.search(rf"\breverse_proxy\s+web:{web_port}\b", handles["handle"])
    assert "respond 404" in handles["handle /metrics"]
    assert "ws" in proxy["depends_on"] and "web" in proxy["depends_on"]


def test_caddy_block_parser_finds_nested_blocks():
    blocks = caddy_blocks("{$A:x} {\n handle /ws/* {\n reverse_proxy ws:1 {\n flush_interval -1\n }\n }\n}\n")

    assert [header for header, _ in blocks] == ["reverse_proxy ws:1", "handle /ws/*", "{$A:x}"]


# --- Dockerfile ---------------------------------------------------------------


def test_dockerfile_is_multi_stage_with_a_slim_final_image():
    all_stages = stages()

    assert len(all_stages) >= 2
    assert all_stages[0]["name"] == "builder"
    final = all_stages[-1]
    assert final["base"] in ("python:3.11-slim", "${PYTHON_IMAGE}")
    builder_runs = " ".join(args for kind, args in all_stages[0]["instructions"] if kind == "RUN")
    assert "build-essential" in builder_runs
    assert "-r /tmp/requirements/production.txt" in builder_runs
    assert "python -m venv /opt/venv" in builder_runs
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", (ROOT / "Dockerfile").read_text())


def test_final_stage_has_no_build_tools_and_runs_as_a_user():
    final = stages()[-1]["instructions"]

    runs = " ".join(args for kind, args in final if kind == "RUN")
    for tool in BUILD_TOOLS:
        assert tool not in runs, tool
    users = [args for kind, args in final if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(kind == "COPY" and "--from=builder" in args and "/opt/venv" in args for kind, args in final)
    assert "collectstatic --noinput" in runs


def test_final_stage_healthcheck_and_default_command():
    final = stages()[-1]["instructions"]

    healthchecks = [args for kind, args in final if kind == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "urllib.request" in healthchecks[0] and "/healthz" in healthchecks[0]
    (command,) = [args for kind, args in final if kind == "CMD"]
    assert command == '["gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi"]'


def test_every_copy_source_exists_and_is_in_the_build_context():
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    names = [stage["name"] for stage in stages()]
    sources = []
    for index, stage in enumerate(stages()):
        for kind, args in stage["instructions"]:
            if kind not in ("COPY", "ADD"):
                continue
            parts = [
                part
                for part in args.split()
                if not part.startswith("--chown") and not part.startswith("--chmod")
            ]
            if parts[0].startswith("--from="):
                assert parts[0].split("=", 1)[1] in names[:index], args
                continue
            sources.extend(parts[:-1])

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
        assert not any(
            fnmatch.fnmatch(source, pattern) or source.split("/")[0] == pattern for pattern in ignored
        ), f"{source} is excluded by .dockerignore"


def test_build_time_collectstatic_values_satisfy_the_production_settings(tmp_path):
    """The dummy values of the build step still start the production settings (no new required variable)."""
    runs = [args for kind, args in stages()[-1]["instructions"] if kind == "RUN" and "collectstatic" in args]
    (run,) = runs
    assignments = dict(
        re.findall(r"\b([A-Z][A-Z0-9_]+)=(\S+)", run.split("python manage.py collectstatic")[0])
    )
    assert {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"} <= set(assignments)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "KEEL_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        **assignments,
    }

    completed = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]


# --- Prometheus next to the stack ---------------------------------------------


def test_prometheus_scrapes_web_and_worker_where_compose_serves_metrics():
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())

    assert all((DEPLOY / "prometheus" / path).is_file() for path in config["rule_files"])
    assert "alerts.yml" in config["rule_files"]
    targets = {
        job["job_name"]: [target for static in job["static_configs"] for target in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["keel-web"] == [f"web:{services['web']['environment']['PORT']}"]
    worker_env = services["worker"]["environment"]
    assert targets["keel-worker"] == [f"worker:{worker_env['KEEL_WORKER_METRICS_PORT']}"]
    assert worker_env["KEEL_WORKER_METRICS_PORT"] in services["worker"]["expose"]
    # The pool processes write their metrics where the image made a directory for them.
    final_runs = " ".join(args for kind, args in stages()[-1]["instructions"] if kind == "RUN")
    assert f"mkdir -p {worker_env['PROMETHEUS_MULTIPROC_DIR']}" in final_runs
