"""Demo data for a new installation, added only when missing (safe to run again)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.core.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo staff login and each app's demo data when they are missing."

    def handle(self, *args: Any, **options: Any) -> None:
        for line in demo_seed():
            self.stdout.write(line)
