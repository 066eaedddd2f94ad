"""Write every collection definition as JSON (the format ``load_collections`` reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandParser

from apps.content.models import Collection
from apps.content.selectors.collections import collection_definition


class Command(BaseCommand):
    help = "Write every collection definition, sorted by name, as a JSON list."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")
        parser.add_argument("names", nargs="*", help="Only these collections.")

    def handle(self, *args: Any, **options: Any) -> None:
        queryset = Collection.objects.order_by("name")
        if options["names"]:
            queryset = queryset.filter(name__in=options["names"])
        definitions = [collection_definition(collection) for collection in queryset]
        text = orjson.dumps(definitions, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {len(definitions)} collection(s) to {options['output']}.")
        else:
            self.stdout.write(text, ending="")
