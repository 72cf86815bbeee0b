"""restd's Tornado handlers: the only restd modules that import tornado (STYLE 1).

A request's path: ``ApiHandler.prepare`` (request id, CORS, CSRF) → the
handler method (authenticate, parse the body or query into a model) → a
domain function in restd/ → the response model, or an ``ApiError`` rendered
by ``ApiHandler.write_error``.
"""
