"""Content models, one module per concern."""
