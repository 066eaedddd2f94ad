"""One real stack (``manage.py keel_run``: uvicorn + Celery worker with beat) for the e2e session."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.e2e.stack import KeelStack, start_stack


@pytest.fixture(scope="session")
def keel_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeelStack]:
    stack = start_stack(tmp_path_factory.mktemp("keel-stack"))
    try:
        yield stack
    finally:
        code = stack.stop(signal.SIGTERM)
        leftovers = stack.alive_processes()
        if leftovers:
            stack.kill_everything()
        assert code == 0, f"keel_run exited with {code}:\n{stack.output()[-4000:]}"
        assert leftovers == [], f"processes outlived keel_run: {leftovers}"
