"""Writes of the content app, one module per concern."""
