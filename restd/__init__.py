"""The REST service the web app calls: auth, profiles, feed, connection requests,
message history and payments. Tornado, JSON in and out, validated by pydantic.

Layout (one module per concept):

- ``app``: composition (``make_app``, ``start_restd``, ``serve``; metrics on a
  port of their own); ``routes``: the route table,
  shared by Tornado and the OpenAPI document (``openapi``).
- ``handlers/``: the only modules that import tornado. ``handlers.base`` holds
  the error shape, CORS, CSRF, authentication, parsing and metrics.
- Domain (no tornado): ``accounts`` (signup, login, refresh rotation, logout),
  ``devices`` (the device cookie that keeps lockouts from locking owners out),
  ``users`` (profiles, search), ``prefs`` (the one writer of a user's prefs),
  ``connections`` (requests, connections), ``blocks``, ``conversations``
  (read-only history), ``notify`` (events to chatd through core.bus, email
  hooks for workers).
- ``models``: every wire model; ``errors``: the ApiError family;
  ``context``: what handlers get through ``initialize``; ``metrics``.

A request's hops: ``ApiHandler.prepare`` (request id, client address, body
limit, CORS, CSRF; before any of the body is read) → handler
method (authenticate, parse into a model) → domain function (store, then
publish) → response model, or an ``ApiError`` rendered by ``write_error``.
"""
