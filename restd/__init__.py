"""The REST service the web app calls: auth, profiles, feed, connection requests,
message history and payments. Tornado, JSON in and out, validated by pydantic.

HTTP only: the product's rules live in ``domain/``, which restd calls and
never the other way round.

- ``app``: composition (``make_app``, ``start_restd``, ``serve``; metrics on a
  port of their own); ``routes``: the route table, shared by Tornado and the
  OpenAPI document (``openapi``).
- ``handlers/``: the request handlers, one module per area (auth, users,
  connections, conversations, feed, payments, email, docs); ``handlers.base``
  holds the error shape, CORS, CSRF, authentication, parsing and metrics.

A request's hops: ``ApiHandler.prepare`` (request id, client address, body
limit, CORS, CSRF; before any of the body is read) → handler
method (authenticate, parse into a model) → domain function (store, then
publish) → response model, or an ``ApiError`` rendered by ``write_error``.
"""
