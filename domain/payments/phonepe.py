"""The PhonePe Standard Checkout v2 client: OAuth token, create payment, order status.

Rules (PhonePe's docs and its Python SDK, summarised in README.md here):

- The ``O-Bearer`` token is cached and refreshed at half its life, before it
  expires. A 401 from an API call forces exactly one refresh and one more try;
  a second 401 is an error. Concurrent callers share one refresh (a lock), and a
  failed refresh keeps a cached token that has not yet expired.
- Every request has a timeout. Retries are bounded (``phonepe_retry_attempts``
  in all, backoff doubling from ``phonepe_retry_backoff_s``) and happen only on
  connection errors, 5xx and 429; any other 4xx is final. A timeout after a
  create-payment request was sent is not retried (it may have been processed):
  the order is then settled by the status API, like any pending order.
- Responses are parsed leniently: unknown fields are ignored, as PhonePe asks.

An ``httpx.AsyncClient`` lives for one operation (token fetch and retries
included), so nothing outlives the event loop that made it; payments are a few
calls per order, so pooling across operations buys nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from core.settings import Settings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

TOKEN_PATH = "/v1/oauth/token"
PAY_PATH = "/checkout/v2/pay"
STATUS_PATH = "/checkout/v2/order/{merchant_order_id}/status"
# When the provider gives no expiry, assume this life and refresh at half of it.
DEFAULT_TOKEN_LIFE_S = 3600
MAX_RETRY_AFTER_S = 10.0

# Sent before the request left this machine: always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ProviderError(Exception):
    """The provider did not do what was asked. ``status`` is its HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class ProviderUnavailable(ProviderError):
    """Unreachable, timed out, or 5xx/429 after every retry."""


class ProviderRefused(ProviderError):
    """A 4xx other than 429 (after the one token refresh, for a 401)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class TokenResponse(_Lenient):
    access_token: str
    token_type: str = "O-Bearer"
    issued_at: int | None = None
    expires_at: int | None = None


class CreatedPayment(_Lenient):
    orderId: str
    state: str = "PENDING"
    expireAt: int | None = None  # epoch ms
    redirectUrl: str


class OrderStatus(_Lenient):
    orderId: str | None = None
    state: str
    amount: int | None = None
    expireAt: int | None = None
    errorCode: str | None = None
    detailedErrorCode: str | None = None


class PhonePeConfig(BaseModel):
    """The client's settings: field ``x`` is read from the setting ``phonepe_x`` (``attempts``
    and ``backoff_s`` from ``phonepe_retry_*``). URLs are kept without a trailing slash."""

    model_config = ConfigDict(
        frozen=True, populate_by_name=True, alias_generator=lambda field: f"phonepe_{field}"
    )

    base_url: str
    oauth_url: str
    client_id: str | None
    client_secret: str | None
    client_version: int
    timeout_s: float
    attempts: int = Field(alias="phonepe_retry_attempts")
    backoff_s: float = Field(alias="phonepe_retry_backoff_s")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        return url.rstrip("/")

    @field_validator("oauth_url", mode="before")
    @classmethod
    def _oauth_url(cls, url: str | None, info: ValidationInfo) -> str:
        """Where tokens are fetched: the base URL unless a separate one is set."""
        return (url or info.data["base_url"]).rstrip("/")

    @classmethod
    def from_settings(cls, s: Settings) -> PhonePeConfig:
        return cls.model_validate(s, from_attributes=True)

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)


@dataclass(frozen=True)
class Token:
    value: str
    issued_at_s: float
    expires_at_s: float

    @property
    def refresh_at_s(self) -> float:
        return self.issued_at_s + (self.expires_at_s - self.issued_at_s) / 2


def _error_code(resp: httpx.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        code = body.get("code") or body.get("errorCode")
        return str(code) if code else None
    return None


class PhonePeClient:
    def __init__(
        self,
        config: PhonePeConfig,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._transport = transport
        self._token: Token | None = None
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0  # tokens obtained by this client, for logs and tests

    # -- public operations ---------------------------------------------------------

    async def create_payment(
        self,
        *,
        merchant_order_id: str,
        amount_paise: int,
        redirect_url: str,
        expire_after_s: int,
        message: str,
        meta: dict[str, str] | None = None,
    ) -> CreatedPayment:
        body: dict[str, Any] = {
            "merchantOrderId": merchant_order_id,
            "amount": amount_paise,
            "expireAfter": expire_after_s,
            "metaInfo": meta or {},
            "paymentFlow": {
                "type": "PG_CHECKOUT",
                "message": message,
                "merchantUrls": {"redirectUrl": redirect_url},
            },
        }
        data = await self._authorized("POST", PAY_PATH, json=body)
        return self._parse(CreatedPayment, data, "create payment")

    async def order_status(self, merchant_order_id: str) -> tuple[OrderStatus, dict[str, Any]]:
        """The order as the provider sees it, and its raw body (kept as providerPayload)."""
        path = STATUS_PATH.format(merchant_order_id=merchant_order_id)
        data = await self._authorized(
            "GET", path, params={"details": "false", "errorContext": "false"}
        )
        return self._parse(OrderStatus, data, "order status"), data

    # -- token -----------------------------------------------------------------------

    async def token(self, client: httpx.AsyncClient, *, stale: str | None = None) -> str:
        """A valid token; ``stale`` names one the provider refused, forcing a new one."""
        now = self._clock()
        cached = self._token
        if cached and cached.value != stale and now < cached.refresh_at_s:
            return cached.value
        async with self._token_lock:
            cached = self._token
            now = self._clock()
            if cached and cached.value != stale and now < cached.refresh_at_s:
                return cached.value  # another caller refreshed while we waited
            try:
                self._token = await self._fetch_token(client)
            except ProviderError:
                # The SDK's rule: keep a cached token that is still within its life.
                if cached and cached.value != stale and now < cached.expires_at_s:
                    log.warning("phonepe token refresh failed; using the cached token")
                    return cached.value
                raise
            return self._token.value

    async def _fetch_token(self, client: httpx.AsyncClient) -> Token:
        cfg = self.config
        if not cfg.configured:
            raise ProviderRefused("PhonePe client credentials are not configured")
        form = {
            "client_id": cfg.client_id or "",
            "client_secret": cfg.client_secret or "",
            "client_version": str(cfg.client_version),
            "grant_type": "client_credentials",
        }
        # Idempotent: a token request may be retried after any transport error.
        resp = await self._send(
            client, "POST", cfg.oauth_url + TOKEN_PATH, idempotent=True, data=form
        )
        if resp.status_code != 200:
            raise ProviderRefused(
                f"token request refused: HTTP {resp.status_code}",
                status=resp.status_code,
                code=_error_code(resp),
            )
        parsed = self._parse(TokenResponse, self._json(resp, "token"), "token")
        now = self._clock()
        issued = float(parsed.issued_at or now)
        expires = float(parsed.expires_at or issued + DEFAULT_TOKEN_LIFE_S)
        self.token_fetches += 1
        log.info("phonepe token obtained", extra={"tokenExpiresAt": int(expires)})
        return Token(parsed.access_token, issued, expires)

    # -- transport -------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.config.timeout_s, transport=self._transport)

    async def _authorized(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.config.base_url + path
        async with self._client() as client:

            async def send(token: str) -> httpx.Response:
                return await self._send(
                    client,
                    method,
                    url,
                    idempotent=method == "GET",
                    json=json,
                    params=params,
                    headers={"Authorization": f"O-Bearer {token}"},
                )

            token = await self.token(client)
            resp = await send(token)
            if resp.status_code == 401:
                log.info("phonepe answered 401; refreshing the token once")
                resp = await send(await self.token(client, stale=token))
            if resp.status_code >= 400:
                raise ProviderRefused(
                    f"{method} {path}: HTTP {resp.status_code}",
                    status=resp.status_code,
                    code=_error_code(resp),
                )
            return self._json(resp, path)

    async def _send(
        self, client: httpx.AsyncClient, method: str, url: str, *, idempotent: bool, **kwargs: Any
    ) -> httpx.Response:
        """One request with the retry rules; 5xx/429 after the last attempt raise."""
        attempts = self.config.attempts
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                resp = await client.request(method, url, **kwargs)
            except _NOT_SENT as exc:
                if last:
                    raise ProviderUnavailable(f"{method} {url}: {exc!r}") from exc
                log.info("phonepe %s %s: %r; retrying", method, url, exc)
                await asyncio.sleep(self._backoff(attempt))
                continue
            except httpx.TransportError as exc:
                if last or not idempotent:
                    raise ProviderUnavailable(f"{method} {url}: {exc!r}") from exc
                log.info("phonepe %s %s: %r; retrying", method, url, exc)
                await asyncio.sleep(self._backoff(attempt))
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                if last:
                    raise ProviderUnavailable(
                        f"{method} {url}: HTTP {resp.status_code} after {attempts} attempts",
                        status=resp.status_code,
                        code=_error_code(resp),
                    )
                log.info("phonepe %s %s: HTTP %d; retrying", method, url, resp.status_code)
                await asyncio.sleep(self._backoff(attempt, resp))
                continue
            return resp
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _backoff(self, attempt: int, resp: httpx.Response | None = None) -> float:
        delay: float = self.config.backoff_s * float(2 ** (attempt - 1))
        if resp is not None and resp.status_code == 429:
            with contextlib.suppress(ValueError):
                delay = max(
                    delay, min(float(resp.headers.get("Retry-After", 0)), MAX_RETRY_AFTER_S)
                )
        return delay

    @staticmethod
    def _json(resp: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            raise ProviderError(
                f"{what}: the response is not JSON", status=resp.status_code
            ) from None
        if not isinstance(data, dict):
            raise ProviderError(f"{what}: expected a JSON object", status=resp.status_code)
        return data

    @staticmethod
    def _parse(model: type[M], data: dict[str, Any], what: str) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ProviderError(
                f"{what}: unexpected response: {exc.error_count()} errors"
            ) from None
