"""Content models, one module per concern."""

from apps.content.models.files import File as File
