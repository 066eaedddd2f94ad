"""``make run`` / ``make test`` recipes, checked with make's dry run (nothing is installed or started)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(*targets: str, venv: Path, env: dict[str, str] | None = None, what_if: str | None = None) -> str:
    command = ["make", "--dry-run", *targets, f"VENV={venv}", f"PYTHON={sys.executable}"]
    if what_if:
        command.insert(2, f"--what-if={what_if}")
    completed = subprocess.run(
        command,
        cwd=settings.BASE_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return completed.stdout


def installed_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # newer than every requirements file
    return venv


def test_fresh_checkout_creates_the_venv_installs_requirements_then_runs(tmp_path):
    out = dry_run("run", venv=tmp_path / "venv", env={"PORT": "8000"})

    assert "-m venv" in out
    assert "pip install" in out and "-r requirements/local.txt" in out
    assert f"{tmp_path / 'venv'}/bin/python manage.py keel_run --port 8000" in out
    assert out.index("pip install") < out.index("keel_run")


def test_installed_venv_is_not_reinstalled(tmp_path):
    venv = installed_venv(tmp_path)

    out = dry_run("run", venv=venv, env={"PORT": "8000"})

    assert "pip install" not in out
    assert f"{venv}/bin/python manage.py keel_run --port 8000" in out


@pytest.mark.parametrize("changed", ["requirements/base.txt", "requirements/local.txt"])
def test_changed_requirements_are_installed_again(tmp_path, changed):
    out = dry_run("run", venv=installed_venv(tmp_path), what_if=changed)

    assert "pip install" in out and "-r requirements/local.txt" in out


def test_port_comes_from_the_environment(tmp_path):
    out = dry_run("run", venv=installed_venv(tmp_path), env={"PORT": "9137"})

    assert "keel_run --port 9137" in out


def test_make_test_runs_every_check(tmp_path):
    out = dry_run("test", venv=installed_venv(tmp_path))

    for check in (
        "ruff check",
        "ruff format --check",
        "mypy",
        "lint-imports",
        "makemigrations --check",
        "pytest",
    ):
        assert check in out, check
