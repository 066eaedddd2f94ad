"""Collaborative text: ``text_crdt`` fields hold a Yjs document, merged with pycrdt.

Each ``text_crdt`` field is its own Yjs document with one root ``Y.Text``
named ``text``. Clients send Yjs updates (base64); the server applies them to
the stored state, so concurrent edits from both sides are all kept. Clients
that do not speak Yjs write a plain string: the server turns the difference
between the current text and the new one into Yjs edits, so even those writes
merge with concurrent collaborative edits instead of overwriting them.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from dataclasses import dataclass

from pycrdt import Doc, Text

ROOT = "text"
MAX_UPDATE_BYTES = 1024 * 1024


class InvalidCrdtUpdate(ValueError):
    pass


@dataclass(frozen=True)
class CrdtState:
    text: str
    state: str  # base64 of the full document as one update
    state_vector: str  # base64


def _load(state_b64: str | None) -> tuple[Doc, Text]:
    doc: Doc = Doc()
    text = doc.get(ROOT, type=Text)
    if state_b64:
        doc.apply_update(base64.b64decode(state_b64))
    return doc, text


def _snapshot(doc: Doc, text: Text) -> CrdtState:
    return CrdtState(
        text=str(text),
        state=base64.b64encode(doc.get_update()).decode(),
        state_vector=base64.b64encode(doc.get_state()).decode(),
    )


def decode_update(update_b64: str) -> bytes:
    try:
        raw = base64.b64decode(update_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCrdtUpdate("not valid base64") from exc
    if len(raw) > MAX_UPDATE_BYTES:
        raise InvalidCrdtUpdate("update too large")
    return raw


def crdt_apply_update(state_b64: str | None, update_b64: str) -> CrdtState:
    """Merge a client's Yjs update into the stored state."""
    raw = decode_update(update_b64)
    doc, text = _load(state_b64)
    try:
        doc.apply_update(raw)
    except Exception as exc:  # the Rust core raises its own error types
        raise InvalidCrdtUpdate("not a Yjs update") from exc
    return _snapshot(doc, text)


def crdt_set_text(state_b64: str | None, new_text: str) -> CrdtState:
    """Make the text equal ``new_text`` with minimal Yjs edits (keeps concurrent edits)."""
    doc, text = _load(state_b64)
    current = str(text)
    if current != new_text:
        matcher = difflib.SequenceMatcher(a=current, b=new_text, autojunk=False)
        # Apply from the end so earlier offsets stay valid.
        with doc.transaction():
            for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
                if tag in ("replace", "delete"):
                    del text[i1:i2]
                if tag in ("replace", "insert"):
                    text.insert(i1, new_text[j1:j2])
    return _snapshot(doc, text)


def crdt_text_of(state_b64: str | None) -> str:
    _doc, text = _load(state_b64)
    return str(text)
