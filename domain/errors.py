"""The one error shape of restd: ``{"error": {"code", "message", "details"}}``.

Domain code raises ``ApiError`` (or a subclass); the handler base turns it into
the response. ``message`` is client text; ``log_message`` is for our logs only
and never reaches the client (Tornado's HTTPError keeps the two apart the same way).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A subclass declares its HTTP status, code and default message in its class
    statement: ``class NotFound(ApiError, status=404, code="not_found", message=...)``;
    without ``message`` it keeps the one it inherits."""

    status = 400
    code = "bad_request"
    message = "The request is not valid."

    def __init_subclass__(
        cls, *, status: int, code: str, message: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = status
        cls.code = code
        if message is not None:
            cls.message = message

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Any = None,
        log_message: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.code = code or type(self).code
        self.details = details
        self.log_message = log_message or self.message
        self.retry_after_s = retry_after_s
        super().__init__(self.log_message)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError, status=400, code="bad_request"): ...


class ValidationFailed(
    ApiError, status=422, code="validation_failed", message="Some fields are not valid."
):
    """422; ``details`` lists the failing fields as ``[{"field", "message", "type"}]``."""


class Unauthorized(
    ApiError, status=401, code="unauthorized", message="Authentication is required."
): ...


class Forbidden(ApiError, status=403, code="forbidden", message="This action is not allowed."): ...


class NotFound(ApiError, status=404, code="not_found", message="Not found."): ...


class Conflict(
    ApiError,
    status=409,
    code="conflict",
    message="The request conflicts with the current state.",
): ...


class TooManyRequests(
    ApiError, status=429, code="rate_limited", message="Too many requests; retry later."
): ...


class PayloadTooLarge(
    ApiError,
    status=413,
    code="payload_too_large",
    message="The request body is too large for this endpoint.",
):
    """413: the body is over the route's limit; refused before it is read."""


class ServiceBusy(ApiError, status=503, code="busy", message="The service is busy; retry shortly."):
    """503 with Retry-After: a bounded resource (password hashing) stayed full."""


# Status codes Tornado raises itself (unknown method, oversized body, ...).
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "busy",
}
