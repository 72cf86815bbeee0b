"""Shared runtime for chatd, restd and workers: settings, stores, auth, logging, metrics.

Imports nothing from chatd, restd or workers (STYLE 1). ``core.cli`` is the
composition root and reaches them only by module name.
"""
