"""Re-encrypt personal fields with the current key after a key was added to FIELD_ENCRYPTION_KEYS.

Rotation: put the new key first in ``FIELD_ENCRYPTION_KEYS`` (keep the old
ones after it), deploy, run this command, then drop the old keys.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.services.encryption import encrypted_values_rotate


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field value with the current (first) key of FIELD_ENCRYPTION_KEYS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Rows per transaction (default 500).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        counts = encrypted_values_rotate(batch_size=batch_size)
        self.stdout.write(
            f"Re-encrypted {counts['rotated']} value(s); {counts['current']} already used the current key."
        )
        if counts["unreadable"]:
            raise CommandError(
                f"{counts['unreadable']} value(s) could not be decrypted with any configured key; "
                "they were left as they are. Add the missing key to FIELD_ENCRYPTION_KEYS and run again."
            )
