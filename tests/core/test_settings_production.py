"""Production settings: refuse an unsafe configuration with one clear line; deploy checks clean."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config.settings.base import INSECURE_DEFAULT_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
EX_CONFIG = 78


def sane_env(tmp_path: Path) -> dict[str, str]:
    """A production environment that starts: only what the operator must set, nothing inherited."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "KEEL_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "api.example.com",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(40),
    }


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(["-c", "import django; django.setup()"], env)


def test_sane_production_settings_start(tmp_path):
    completed = start(sane_env(tmp_path))

    assert completed.returncode == 0, completed.stderr
    assert "refuses" not in completed.stderr


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG"),
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG"),
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": INSECURE_DEFAULT_SECRET_KEY}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "short-but-not-default"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_ALLOWED_HOSTS": None}, "DJANGO_ALLOWED_HOSTS"),
        ({"FIELD_ENCRYPTION_KEYS": None}, "FIELD_ENCRYPTION_KEYS"),
        ({"FIELD_ENCRYPTION_KEYS": "not-a-fernet-key"}, "FIELD_ENCRYPTION_KEYS"),
        ({"BLIND_INDEX_KEY": "tiny-index-key"}, "BLIND_INDEX_KEY"),
    ],
    ids=lambda value: str(value),
)
def test_unsafe_production_settings_refuse_to_start_with_one_line(tmp_path, change, variable):
    env = sane_env(tmp_path)
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value

    completed = start(env)

    assert completed.returncode == EX_CONFIG
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("Keel refuses to start in production: ")
    assert variable in lines[0]
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""
    # The line names what to set, never the (possibly secret) value it saw.
    for value in change.values():
        if value and len(value) > 5:
            assert value not in lines[0]


# Warnings of `check --deploy` that production settings cannot fix, each owned
# elsewhere and to be fixed there; remove an entry once it is (nothing new may
# join them):
# - oauth2_provider.W005-W008: RFC 9700 defaults of the OAuth provider
#   (OAUTH2_PROVIDER in the Accounts section of base.py).
KNOWN_ELSEWHERE = {
    "oauth2_provider.W005",
    "oauth2_provider.W006",
    "oauth2_provider.W007",
    "oauth2_provider.W008",
}


def deploy_check(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return run(["manage.py", "check", "--deploy", "--fail-level", "WARNING", *extra], env)


def reported_issues(completed: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"\(([a-z_0-9]+\.[EWC]\d+)\)", completed.stdout + completed.stderr))


def test_deploy_checks_report_nothing_but_known_issues_owned_elsewhere(tmp_path):
    completed = deploy_check(sane_env(tmp_path))

    reported = reported_issues(completed)
    assert reported <= KNOWN_ELSEWHERE, sorted(reported - KNOWN_ELSEWHERE)
    assert not re.search(r"\([a-z_0-9]+\.E\d+\)", completed.stdout + completed.stderr)
    assert not any(issue.startswith("security.") for issue in reported)  # Django's own, all fixed here


def test_deploy_checks_would_report_what_production_settings_fix(tmp_path):
    """The checks above can fail: the same command under the development settings reports issues."""
    env = sane_env(tmp_path) | {"DJANGO_SETTINGS_MODULE": "config.settings.local", "DJANGO_DEBUG": "false"}

    completed = deploy_check(env, "--tag", "security")

    assert completed.returncode != 0
    # No HSTS, no HTTPS redirect, session and CSRF cookies over plain HTTP.
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= reported_issues(completed)
