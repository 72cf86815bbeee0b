"""The Celery tier: email, recommendation precompute, payment reconciliation, retries.

Tasks are declared with ``shared_task`` and bound to the app that
``make_celery(settings)`` builds in the worker's start-up, so no module holds a
configured global app (STYLE 9). Dependencies reach tasks through
``workers.context`` built at worker start-up (STYLE 6).
"""
