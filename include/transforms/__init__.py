"""Computed-field functions that export definitions name in ``transform.function``."""
