"""The Celery application.

Defaults every task inherits: late acknowledgement (a task whose worker dies
is delivered again, so tasks must be safe to run twice), time limits, and
retry with exponential backoff on transient errors. The request id of the
work that queued a task travels in its headers and is bound while it runs.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying: the network, a busy database, a broker or provider briefly away.

    Deliberately not every ``OSError``: a missing file or a permission error
    does not heal by waiting.
    """
    import httpx
    import redis.exceptions
    from django.db import InterfaceError, OperationalError
    from kombu.exceptions import OperationalError as BrokerOperationalError

    return (
        ConnectionError,
        TimeoutError,
        OperationalError,
        InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        httpx.TransportError,
        BrokerOperationalError,
    )


TRANSIENT_ERRORS = _transient_errors()


class KeelTask(Task):  # type: ignore[misc]
    """The base of every Keel task: late ack, time limits (settings), retry with backoff.

    ``acks_late`` and the time limits come from ``CELERY_TASK_*`` settings and
    apply to every task; a task may lower them in its decorator.
    """

    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = True
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = 8


app = Celery("keel", task_cls=KeelTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.before_task_publish.connect
def _attach_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    from apps.core.request_context import get_request_id

    request_id = get_request_id()
    if headers is not None and request_id and "request_id" not in headers:
        headers["request_id"] = request_id


# The request id that was current before each running task, restored after it:
# an eager task (tests, CELERY_TASK_ALWAYS_EAGER) runs inside its caller and
# must not leave the caller without its id.
_outer_request_ids: dict[str, str | None] = {}


@signals.task_prerun.connect
def _bind_request_id(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    from apps.core.request_context import bind_request_id, get_request_id, new_request_id

    outer = get_request_id()
    request = task.request if task is not None else None
    request_id = getattr(request, "request_id", None)
    if not request_id and request is not None and request.is_eager:
        request_id = outer
    if task_id:
        _outer_request_ids[task_id] = outer
    bind_request_id(request_id or new_request_id())


@signals.task_postrun.connect
def _restore_request_id(task_id: str | None = None, **_: Any) -> None:
    from apps.core.request_context import bind_request_id

    bind_request_id(_outer_request_ids.pop(task_id, None) if task_id else None)


@signals.setup_logging.connect
def _keep_django_logging(**_: Any) -> None:
    """Celery keeps the structured logging that the settings configured."""


@signals.worker_process_init.connect
def _init_worker_observability(**_: Any) -> None:
    from apps.core.observability import configure_integrations

    configure_integrations(celery=True)
