"""The base of every restd handler: one error shape, CORS, CSRF, auth, parsing, metrics.

Bodies are streamed (``stream_request_body``): ``prepare`` runs as soon as the
headers are in, before any of the body is read, so a body over the route's
limit (``max_body_bytes``) is refused with 413 from its Content-Length without
being read, and one sent without a length (chunked) is counted as it arrives
and refused the moment it passes the limit. Nothing past the limit is kept.

The client's address is the socket's peer, unless that peer is a trusted proxy
(``trusted_proxies``): then it is the right-most address of X-Forwarded-For that
is not itself a trusted proxy (``client_address``).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import orjson
import tornado.web
from pydantic import BaseModel, ValidationError
from tornado.http1connection import HTTP1Connection

from core.auth import TokenError
from core.ids import is_object_id
from core.web import BaseHandler
from domain.context import RestContext
from domain.errors import (
    HTTP_CODES,
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from restd.openapi import Operation

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PREFLIGHT_MAX_AGE_S = 600
ALLOWED_REQUEST_HEADERS = "Authorization, Content-Type, X-Request-ID"
EXPOSED_HEADERS = "Retry-After, X-Request-ID"
BAD_TOKEN = "Your credentials are missing, expired or revoked; sign in again."


# Where pydantic reports a bad dict key it appends this marker to the key's location.
DICT_KEY_MARKER = "[key]"


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """The failing fields, without the input values (they may be passwords).

    A bad map key or value is named like a field of the map (``prefs.<key>``), the
    way a client addresses it."""
    return [
        {
            "field": ".".join(str(part) for part in err["loc"] if part != DICT_KEY_MARKER),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(details=validation_details(exc)) from None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(
    peer: str, forwarded_for: str | None, real_ip: str | None, trusted: Iterable[Network]
) -> str:
    """The client's address: the peer, or what a trusted proxy in front says it is.

    Only a peer inside a trusted range is believed. X-Forwarded-For is read from
    the right (each proxy appends the address it saw): the first address that is
    not a trusted proxy is the client; the entries left of it are whatever the
    client chose to send. X-Real-IP stands in when there is no X-Forwarded-For.
    """
    networks = list(trusted)

    def is_trusted(address: Address) -> bool:
        return any(address in network for network in networks)

    peer_address = _address(peer)
    if peer_address is None or not is_trusted(peer_address):
        return peer
    hops = [h for h in (forwarded_for or "").split(",") if h.strip()]
    if not hops and real_ip:
        hops = [real_ip]
    client = peer_address
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # not an address: the proxy nearest it is as far as we can see
        client = address
        if not is_trusted(address):
            break
    return str(client)


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


@tornado.web.stream_request_body
class ApiHandler(BaseHandler):
    operations: ClassVar[dict[str, Operation]] = {}
    # False for endpoints that never read the session cookies (signup, login): a
    # cookie the client happens to carry there authenticates nothing.
    reads_session_cookie: ClassVar[bool] = True

    ctx: RestContext
    route: str
    user_id: str | None = None
    client_ip: str = "unknown"

    def initialize(self, ctx: RestContext, route: str) -> None:
        self.ctx = ctx
        self.route = route
        self._body = bytearray()
        self._body_limit = 0
        self._body_refused = False

    # -- request set-up ---------------------------------------------------------

    def prepare(self) -> None:
        super().prepare()
        self.client_ip = client_address(
            self.request.remote_ip or "unknown",
            self.request.headers.get("X-Forwarded-For"),
            self.request.headers.get("X-Real-IP"),
            self.ctx.trusted_proxies,
        )
        # What xheaders did, but only on a trusted proxy's word: access logs and
        # anything else reading remote_ip see the client, not the ingress.
        self.request.remote_ip = self.client_ip
        self._set_cors_headers()
        self._limit_body()
        if self.request.method in UNSAFE_METHODS:
            self._check_csrf()

    # -- the body ---------------------------------------------------------------

    def max_body_bytes(self) -> int:
        """This route's body limit; JSON routes take the default."""
        return self.ctx.settings.json_body_max_bytes

    def _limit_body(self) -> None:
        """Refuse a declared oversized body unread; bound and time the read of the rest."""
        limit = self._body_limit = self.max_body_bytes()
        declared = self._declared_length()
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            connection.set_body_timeout(self.ctx.settings.http_body_timeout_s)
            # Tornado checks its own limit first and answers a bare 400. Raised to
            # the declared length when refusing (the body is then skipped, not kept,
            # until the 413 is written and the connection closed); for a body
            # without a length, the server's cap, so that ours (413) acts first.
            if declared is not None:
                connection.set_max_body_size(max(declared, limit))
            else:
                connection.set_max_body_size(max(limit, self.ctx.body_cap_bytes))
        if declared is not None and declared > limit:
            raise self._too_large(declared)

    def _declared_length(self) -> int | None:
        value = self.request.headers.get("Content-Length")
        if value is None:
            return None
        try:
            return int(value.split(",")[0].strip())
        except ValueError:
            return None  # Tornado refuses it as malformed when it reads the body

    def _too_large(self, size: int) -> PayloadTooLarge:
        self.ctx.metrics.body_refusals.labels(self.route).inc()
        return PayloadTooLarge(
            details={"maxBytes": self._body_limit},
            log_message=f"body of {size}+ bytes over the {self._body_limit}-byte limit",
        )

    def data_received(self, chunk: bytes) -> None:
        if self._body_refused:
            return  # Tornado skips what still arrives until the connection closes
        if len(self._body) + len(chunk) > self._body_limit:
            error = self._too_large(len(self._body) + len(chunk))
            self._body_refused = True
            self._body.clear()
            self.log_exception(type(error), error, None)
            self.send_error(error.status, exc_info=(type(error), error, None))
            return
        self._body.extend(chunk)

    @property
    def body(self) -> bytes:
        """The request body, read whole (and within the limit) before the method runs."""
        return bytes(self._body)

    @property
    def allowed_origins(self) -> set[str]:
        settings = self.ctx.settings
        allowed = {o for o in (origin_of(u) for u in settings.allowed_origins) if o}
        if settings.public_restd_url and (own := origin_of(settings.public_restd_url)):
            allowed.add(own)
        return allowed

    def _request_origin(self) -> str | None:
        origin = self.request.headers.get("Origin")
        if origin is not None:
            return origin_of(origin) or "null"
        referer = self.request.headers.get("Referer")
        return origin_of(referer) if referer else None

    def _set_cors_headers(self) -> None:
        origin = self.request.headers.get("Origin")
        self.set_header("Vary", "Origin")
        if origin and origin_of(origin) in self.allowed_origins:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Credentials", "true")
            self.set_header("Access-Control-Expose-Headers", EXPOSED_HEADERS)

    def _bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header; None when there is no such header."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip()

    def _has_session_cookie(self) -> bool:
        s = self.ctx.settings
        return bool(self.get_cookie(s.access_cookie_name) or self.get_cookie(s.refresh_cookie_name))

    def _check_csrf(self) -> None:
        """A browser sends our cookies cross-site; so a cookie-authenticated change must
        come from an allowed origin. Bearer requests are exempt: a page cannot make a
        browser attach that header to another site."""
        if self._bearer_token() is not None:
            return
        origin = self._request_origin()
        allowed = origin in self.allowed_origins
        by_cookie = self.reads_session_cookie and self._has_session_cookie()
        if (by_cookie and not allowed) or (origin is not None and not allowed):
            raise Forbidden(
                "Cross-site request refused.", code="csrf", log_message=f"csrf: origin {origin}"
            )

    def options(self, *_args: str, **_kwargs: str) -> None:
        """CORS preflight; a foreign origin gets no CORS headers, so the browser refuses."""
        origin = self.request.headers.get("Origin")
        if origin and origin_of(origin) in self.allowed_origins:
            methods = ", ".join(m.upper() for m in self.operations)
            self.set_header("Access-Control-Allow-Methods", methods)
            self.set_header("Access-Control-Allow-Headers", ALLOWED_REQUEST_HEADERS)
            self.set_header("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_S))
        self.set_status(204)
        self.finish()

    # -- auth -------------------------------------------------------------------

    async def require_user(self) -> str:
        """The caller's user id, from a bearer token or else the access cookie.

        A present bearer header is authoritative: a bad one is refused rather than
        falling back to the cookie. Each authenticated request spends from the
        user's general budget.
        """
        token = self._bearer_token()
        if token is None:
            token = self.get_cookie(self.ctx.settings.access_cookie_name)
        try:
            claims = await self.ctx.authenticator.authenticate(token)
        except TokenError as exc:
            raise Unauthorized(BAD_TOKEN, code="invalid_token", log_message=str(exc)) from None
        if not is_object_id(claims.user_id):
            raise Unauthorized(BAD_TOKEN, code="invalid_token", log_message="sub not an id")
        decision = await self.ctx.limiter.hit(
            "user", f"user:{claims.user_id}", self.ctx.limits.user
        )
        if not decision.allowed:
            raise TooManyRequests(
                log_message=f"user budget spent by {claims.user_id}",
                retry_after_s=decision.retry_after_s,
            )
        self.user_id = claims.user_id
        return claims.user_id

    # -- input and output -------------------------------------------------------

    def parse_body(self, model: type[M]) -> M:
        raw = self.body
        try:
            data = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise BadRequest("The body is not valid JSON.", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ValidationFailed(
                details=[{"field": "", "message": "expected a JSON object", "type": "dict_type"}]
            )
        return validate(model, data)

    def parse_query(self, model: type[M]) -> M:
        data = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        return validate(model, data)

    def write_model(self, model: BaseModel, status: int = 200) -> None:
        self.write_json(model.model_dump(mode="json"), status=status)

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()

    # -- errors and metrics -----------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        # send_error cleared the headers; put back the ones every response carries.
        self.set_header("X-Request-ID", getattr(self, "request_id", ""))
        self._set_cors_headers()
        if isinstance(exc, ApiError):
            error = exc
        elif isinstance(exc, tornado.web.HTTPError) or status_code < 500:
            error = ApiError(
                "The request could not be handled.", code=HTTP_CODES.get(status_code, "error")
            )
            error.status = status_code
        else:
            error = ApiError("Something went wrong on our side.", code="internal")
            error.status = 500
        self.set_status(error.status)
        if error.retry_after_s:
            self.set_header("Retry-After", str(error.retry_after_s))
        self.write_json(error.body(), status=error.status)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, ApiError):
            # An expected client error: one warning line, no traceback (STYLE 5).
            log.warning(
                "%s %s -> %d %s: %s",
                self.request.method,
                self.route,
                value.status,
                value.code,
                value.log_message,
            )
            return
        super().log_exception(typ, value, tb)

    def on_finish(self) -> None:
        metrics = self.ctx.metrics
        status = str(self.get_status())
        metrics.requests.labels(self.route, self.request.method or "", status).inc()
        metrics.latency.labels(self.route).observe(self.request.request_time())


class NotFoundHandler(ApiHandler):
    """Every unknown path: the same error shape as the rest of the API."""

    def prepare(self) -> None:
        super().prepare()
        raise NotFound(log_message=f"no route for {self.request.path}")
