"""Content models, one module per concern."""

from apps.content.models.changes import Change as Change
from apps.content.models.collections import Collection as Collection
from apps.content.models.collections import CollectionIndex as CollectionIndex
from apps.content.models.documents import Document as Document
from apps.content.models.files import File as File
