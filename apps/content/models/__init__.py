"""Content models, one module per concern."""

from apps.content.models.changes import Change as Change
from apps.content.models.collections import Collection as Collection
from apps.content.models.collections import CollectionIndex as CollectionIndex
from apps.content.models.documents import Document as Document
from apps.content.models.files import File as File
from apps.content.models.sync import DocumentClock as DocumentClock
from apps.content.models.sync import DocumentCrdtState as DocumentCrdtState
from apps.content.models.sync import DocumentVersion as DocumentVersion
from apps.content.models.sync import SyncConflict as SyncConflict
from apps.content.models.sync import SyncMutation as SyncMutation
