"""The product's rules, apart from any transport: what an action does to the stores
and whom it tells.

restd (HTTP) and the workers (Celery) both call into it; it never imports
either of them, nor Tornado. Modules, one concept each:

- ``accounts`` (signup, login, refresh rotation, logout), ``devices`` (the
  device cookie that keeps lockouts from locking owners out), ``users``
  (profiles, search), ``prefs`` (the one writer of a user's prefs),
  ``connections`` (requests and connections), ``blocks``, ``conversations``
  (read-only history: chatd writes messages), ``unsubscribe``, ``notify``
  (live events to chatd through core.bus, email tasks for the workers);
- ``feed/``: the "people you may know" ranking, its feature store and cache;
- ``payments/``: PhonePe orders, webhooks, reconciliation and entitlements;
- ``models`` (the REST wire models the actions take and return), ``errors``
  (the ApiError family, each with its HTTP status), ``context`` (what an
  action gets: stores, settings, services), ``metrics``, ``dates``.
"""
