"""Create or update collections from a JSON file (the format ``dump_collections`` writes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.content.services.collections import collection_definition_validate, collection_save
from apps.core.exceptions import KeelError


class Command(BaseCommand):
    help = (
        "Create or update collections from FILE.json, a JSON list of definitions. Collections are "
        "matched by name and updated in place; collections missing from the file and every "
        "stored document are left alone. Nothing is applied unless every definition is valid."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path of the JSON file, or - for standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Validate only; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        definitions = self._read(options["file"])
        problems: list[str] = []
        names: set[str] = set()
        for position, definition in enumerate(definitions):
            label = definition.get("name") if isinstance(definition, dict) else None
            label = label if isinstance(label, str) else f"#{position + 1}"
            if label in names:
                problems.append(f"{label}: defined twice in the file")
            names.add(label)
            try:
                collection_definition_validate(definition)
            except KeelError as exc:
                details = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in (exc.errors or {}).items())
                problems.append(f"{label}: {details or exc.detail}")
        if problems:
            raise CommandError("Nothing was changed. Invalid definitions:\n  " + "\n  ".join(problems))
        if options["dry_run"]:
            self.stdout.write(f"{len(definitions)} definition(s) are valid (dry run: nothing changed).")
            return
        with transaction.atomic():
            outcomes = [collection_save(definition=definition) for definition in definitions]
        for collection, outcome in outcomes:
            self.stdout.write(f"{outcome:9} {collection.name}")

    def _read(self, path: str) -> list[Any]:
        try:
            raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CommandError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(parsed, list):
            raise CommandError(f"{path} must hold a JSON list of collection definitions.")
        return parsed
