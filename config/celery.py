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

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError)


class KeelTask(Task):  # type: ignore[misc]
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


@signals.task_prerun.connect
def _bind_request_id(task: Task | None = None, **_: Any) -> None:
    from apps.core.request_context import bind_request_id, new_request_id

    request_id = getattr(task.request, "request_id", None) if task is not None else None
    bind_request_id(request_id or new_request_id())


@signals.task_postrun.connect
def _unbind_request_id(**_: Any) -> None:
    from apps.core.request_context import bind_request_id

    bind_request_id(None)


@signals.setup_logging.connect
def _keep_django_logging(**_: Any) -> None:
    """Celery keeps the structured logging that the settings configured."""


@signals.worker_process_init.connect
def _init_worker_observability(**_: Any) -> None:
    from apps.core.observability import configure_integrations

    configure_integrations(celery=True)
