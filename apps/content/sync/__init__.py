"""Offline sync building blocks that need no database: clocks, merges, CRDT text."""
