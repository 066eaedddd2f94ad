"""Writes of the accounts app, one module per concern (``services/<concern>.py``)."""
