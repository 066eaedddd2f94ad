"""The README is the operator's manual: it must name every setting Keel reads."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)
README = (BASE_DIR / "README.md").read_text()
_ENV_READ = re.compile(r"\b(?:env|Env\(\))\.[a-z_]+\(\s*(f?)\"([A-Z][A-Z0-9_]*)")
_OS_ENV_READ = re.compile(r"os\.(?:environ\.get\(|environ\[|getenv\()\s*()\"([A-Z][A-Z0-9_]*)\"")
_TABLE_ROW = re.compile(r"^\| (`[A-Z][^|]*?) \|", re.MULTILINE)  # first cell: `NAME`, `OTHER_NAME`
_NAME = re.compile(r"`([A-Z][A-Z0-9_]*(?:<[A-Z_]+>)?)`")


def _configuration_section() -> str:
    start = README.index("## Configuration")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def _documented() -> set[str]:
    return {name for cell in _TABLE_ROW.findall(_configuration_section()) for name in _NAME.findall(cell)}


def _read_by_keel() -> tuple[set[str], set[str]]:
    """Exact names, and prefixes of names built at run time (``f"THROTTLE_RATE_{scope}"``).

    What the settings read, and what code and the gunicorn configuration read
    from ``os.environ`` directly.
    """
    exact: set[str] = set()
    prefixes: set[str] = set()
    modules = [
        *(BASE_DIR / "config").rglob("*.py"),
        *(BASE_DIR / "apps").rglob("*.py"),
        *(BASE_DIR / "deploy").rglob("*.py"),
    ]
    for module in sorted(modules):
        text = module.read_text()
        for is_template, name in [*_ENV_READ.findall(text), *_OS_ENV_READ.findall(text)]:
            (prefixes if is_template else exact).add(name)
    return exact, prefixes


def test_readme_starts_with_the_two_commands():
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block
    assert README.index("make run") < README.index("## ")


def test_every_environment_variable_keel_reads_is_in_the_configuration_table():
    exact, prefixes = _read_by_keel()
    documented = _documented()
    assert "DATABASE_URL" in exact and "KEEL_VAR_DIR" in exact  # the scan itself works

    missing = sorted(name for name in exact if name not in documented)
    missing += sorted(
        f"{prefix}<...>" for prefix in prefixes if not any(row.startswith(prefix + "<") for row in documented)
    )
    assert not missing, f"add a row to the README configuration table for: {', '.join(missing)}"


def test_every_documented_variable_is_read_somewhere():
    sources = [
        *(BASE_DIR / "config").rglob("*.py"),
        *(BASE_DIR / "apps").rglob("*.py"),
        *(BASE_DIR / "deploy").rglob("*.py"),
        BASE_DIR / "manage.py",
        BASE_DIR / "Makefile",
    ]
    code = "\n".join(path.read_text() for path in sources)
    stale = [row for row in _documented() if (row.split("<")[0] if "<" in row else row) not in code]
    assert not stale, f"the README documents variables nothing reads: {stale}"
