"""Demo data: each app contributes a seeder listed in ``KEEL_DEMO_SEEDERS``.

A seeder is a function with no arguments returning lines to print; it adds
only what is missing, so ``make run`` can call it on every start.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.utils.module_loading import import_string


def demo_seed() -> list[str]:
    lines: list[str] = []
    for dotted in settings.KEEL_DEMO_SEEDERS:
        seeder: Callable[[], list[str]] = import_string(dotted)
        lines.extend(seeder())
    return lines
