from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path


def api_path(route: str, view: Any, name: str | None = None) -> list[URLPattern]:
    """The route as written in the contract, and the same with a trailing slash."""
    route = route.rstrip("/")
    return [path(route, view, name=name), path(f"{route}/", view)]
