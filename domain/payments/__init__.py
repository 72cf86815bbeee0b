"""Paid membership through PhonePe Standard Checkout v2 (see domain/payments/README.md).

One module per concept:

- ``plans``: the plan catalogue from settings (the server sets every price).
- ``entitlement``: what a membership grants and how paying extends it (pure).
- ``phonepe``: the provider client over httpx: OAuth token cache (refreshed at half
  its life, forced once on a 401), timeouts, bounded retries.
- ``service``: the domain: create an order, the webhook, the owner's view,
  reconciliation, and the one transition function all of them share.
- ``handlers``: the four routes (the only module here that imports tornado);
  ``models``: their wire models; ``metrics``: Prometheus counters.
- ``simulator``: a local provider speaking the same protocol (``python -m
  tooling.phonepe_simulator``), for development and the tests.

An order's hops: ``POST /api/payments/create`` → ``PaymentsService.create_order``
(PENDING document first, then the provider) → pay page. Then either the webhook
(``handle_webhook``: verify, cross-check, transition) or the status API (the
owner's view, or ``workers.payments.reconcile``) → ``transition`` (one conditional
``find_one_and_update`` from PENDING) → ``grant`` (membership extended once).

This package's ``__init__`` imports nothing, so ``domain.users`` can use
``entitlement`` without loading the provider client.
"""
