"""A local PhonePe: the Standard Checkout v2 protocol on 127.0.0.1, for development and tests.

``python -m tooling.phonepe_simulator --port 8090 --webhook-url http://127.0.0.1:8080/api/payments/webhook``
(every option defaults to the DEVCONNECT_* settings, so under ``devconnect up`` it
needs none). It speaks what restd's client speaks (domain/payments/README.md):

- ``POST /v1/oauth/token`` (form: client_id, client_secret, client_version,
  grant_type) → an ``O-Bearer`` token with ``issued_at``/``expires_at``; an
  expired, revoked or unknown token gets 401 on the APIs below.
- ``POST /checkout/v2/pay`` → ``{orderId, state, expireAt, redirectUrl}``; the
  redirect URL is this simulator's hosted pay page.
- ``GET /checkout/v2/order/{merchantOrderId}/status`` → the order, unwrapped;
  a pending order past its expiry reads ``EXPIRED``.
- ``GET /transact/uat_v2?token=`` → the pay page: Pay, Fail, Leave pending, and
  how to deliver the webhook (normal, delayed, duplicated, lost). Pay and Fail
  settle the order and POST the signed webhook (``Authorization: sha256 hex of
  username:password``) to the merchant; a normal delivery completes before the
  page answers, so a test that clicks Pay can check the result at once.

Switches for tests, under ``/sim``: ``POST /sim/faults {"endpoint": "token"|"pay"|
"status", "statuses": [401, 500, 429, ...]}`` answers the next calls with those
statuses; ``POST /sim/config`` sets the default webhook delivery (``webhook``:
normal | delayed | duplicate | lost, ``copies``, ``delaySeconds``) and
``tokenTtlSeconds``; ``POST /sim/tokens/revoke``; ``POST /sim/orders/{id}/expire``;
``GET /sim/stats`` counts tokens issued, calls per endpoint and webhooks sent.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import logging
import re
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import tornado.web

log = logging.getLogger(__name__)

MERCHANT_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
MIN_AMOUNT_PAISE = 100
DEFAULT_EXPIRE_AFTER_S = 1200
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_MODES = ("normal", "delayed", "duplicate", "lost")
ENDPOINTS = ("token", "pay", "status")


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass
class SimConfig:
    """How the simulator runs: one field per command-line option (``parse_args``)."""

    port: int
    client_id: str
    client_secret: str
    client_version: int
    merchant_id: str
    webhook_url: str
    webhook_username: str
    webhook_password: str
    log_level: str
    token_ttl_s: int = 3600

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class SimState:
    config: SimConfig
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at (epoch s)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by merchantOrderId
    pay_tokens: dict[str, str] = field(default_factory=dict)  # pay-page token -> order
    faults: dict[str, list[int]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    webhook_mode: str = "normal"
    webhook_copies: int = 3
    webhook_delay_s: float = 1.0
    stats: dict[str, int] = field(default_factory=dict)
    pending_sends: set[asyncio.Task[None]] = field(default_factory=set)

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def auth_value(self) -> str:
        c = self.config
        return hashlib.sha256(f"{c.webhook_username}:{c.webhook_password}".encode()).hexdigest()

    def order_view(self, order: dict[str, Any]) -> dict[str, Any]:
        state = order["state"]
        if state == "PENDING" and _ms() > order["expireAt"]:
            state = "EXPIRED"
        view = {k: v for k, v in order.items() if not k.startswith("_")}
        view["state"] = state
        return view


class SimHandler(tornado.web.RequestHandler):
    def initialize(self, state: SimState) -> None:
        self.state = state

    def check_xsrf_cookie(self) -> None:  # a provider API, not a browser form of ours
        return

    def send_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(body))

    def injected_fault(self, endpoint: str) -> bool:
        """Answer with the next queued fault status for this endpoint, if any."""
        self.state.count(f"calls.{endpoint}")
        queue = self.state.faults[endpoint]
        if not queue:
            return False
        status = queue.pop(0)
        self.state.count(f"faults.{endpoint}")
        if status == 401:
            self.send_json({"errorCode": "UNAUTHORIZED", "message": "Unauthorized"}, 401)
        else:
            self.send_json({"code": "INTERNAL_SERVER_ERROR", "message": "injected"}, status)
        return True

    def bearer_ok(self) -> bool:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        expires = self.state.tokens.get(token.strip()) if scheme == "O-Bearer" else None
        if expires is None or expires <= time.time():
            self.state.count("rejected.token")
            self.send_json({"errorCode": "UNAUTHORIZED", "message": "Unauthorized"}, 401)
            return False
        return True


class TokenHandler(SimHandler):
    def post(self) -> None:
        if self.injected_fault("token"):
            return
        c = self.state.config
        args = {k: self.get_body_argument(k, "") for k in ("client_id", "client_secret")}
        version = self.get_body_argument("client_version", "")
        grant = self.get_body_argument("grant_type", "")
        if (
            args["client_id"] != c.client_id
            or args["client_secret"] != c.client_secret
            or version != str(c.client_version)
            or grant != "client_credentials"
        ):
            self.send_json({"errorCode": "INVALID_CLIENT", "message": "Bad client"}, 401)
            return
        token = "sim." + secrets.token_urlsafe(24)
        now = int(time.time())
        expires = now + self.state.config.token_ttl_s
        self.state.tokens[token] = expires
        self.state.count("tokens.issued")
        self.send_json(
            {
                "access_token": token,
                "encrypted_access_token": token,
                "expires_in": None,
                "issued_at": now,
                "expires_at": expires,
                "session_expires_at": expires,
                "token_type": "O-Bearer",
            }
        )


class PayHandler(SimHandler):
    def post(self) -> None:
        if self.injected_fault("pay") or not self.bearer_ok():
            return
        try:
            body = orjson.loads(self.request.body)
            merchant_order_id = str(body["merchantOrderId"])
            amount = int(body["amount"])
            redirect = str(body["paymentFlow"]["merchantUrls"]["redirectUrl"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.send_json({"code": "BAD_REQUEST", "message": "Malformed request"}, 400)
            return
        if not MERCHANT_ORDER_ID_RE.match(merchant_order_id) or amount < MIN_AMOUNT_PAISE:
            self.send_json({"code": "BAD_REQUEST", "message": "Invalid order or amount"}, 400)
            return
        if merchant_order_id in self.state.orders:
            self.send_json({"code": "BAD_REQUEST", "message": "Duplicate merchantOrderId"}, 400)
            return
        expire_after = int(body.get("expireAfter") or DEFAULT_EXPIRE_AFTER_S)
        order_id = "OMO" + secrets.token_hex(10).upper()
        pay_token = secrets.token_urlsafe(16)
        order: dict[str, Any] = {
            "orderId": order_id,
            "merchantId": self.state.config.merchant_id,
            "merchantOrderId": merchant_order_id,
            "state": "PENDING",
            "amount": amount,
            "expireAt": _ms() + expire_after * 1000,
            "metaInfo": body.get("metaInfo") or {},
            "paymentDetails": [],
            "_redirect": redirect,
        }
        self.state.orders[merchant_order_id] = order
        self.state.pay_tokens[pay_token] = merchant_order_id
        pay_url = f"{self.state.config.public_url}/transact/uat_v2?" + urlencode(
            {"token": pay_token}
        )
        self.send_json(
            {
                "orderId": order_id,
                "state": "PENDING",
                "expireAt": order["expireAt"],
                "redirectUrl": pay_url,
            }
        )


class StatusHandler(SimHandler):
    def get(self, merchant_order_id: str) -> None:
        if self.injected_fault("status") or not self.bearer_ok():
            return
        order = self.state.orders.get(merchant_order_id)
        if order is None:
            self.send_json({"code": "ORDER_NOT_FOUND", "message": "No such order"}, 404)
            return
        self.send_json(self.state.order_view(order))


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>PhonePe simulator</title></head>
<body><h1>Pay &#8377;{rupees}</h1><p>Order {order_id} ({merchant_order_id}): {state}</p>
<form method="post" action="/transact/uat_v2/pay?token={token}">
<label>Webhook <select name="webhook">{modes}</select></label>
<button name="action" value="pay">Pay</button>
<button name="action" value="fail">Fail</button>
<button name="action" value="pending">Leave pending</button>
</form></body></html>"""


class PayPageHandler(SimHandler):
    def _order(self) -> dict[str, Any] | None:
        merchant_order_id = self.state.pay_tokens.get(self.get_query_argument("token", ""))
        return self.state.orders.get(merchant_order_id or "")

    def get(self) -> None:
        order = self._order()
        if order is None:
            raise tornado.web.HTTPError(404)
        modes = "".join(
            f"<option{' selected' if m == self.state.webhook_mode else ''}>{m}</option>"
            for m in WEBHOOK_MODES
        )
        self.finish(
            PAGE.format(
                rupees=f"{order['amount'] / 100:.2f}",
                order_id=html.escape(order["orderId"]),
                merchant_order_id=html.escape(order["merchantOrderId"]),
                state=order["state"],
                token=html.escape(self.get_query_argument("token")),
                modes=modes,
            )
        )

    async def post(self) -> None:
        order = self._order()
        if order is None:
            raise tornado.web.HTTPError(404)
        action = self.get_body_argument("action", "")
        mode = self.get_body_argument("webhook", self.state.webhook_mode)
        if action not in ("pay", "fail", "pending") or mode not in WEBHOOK_MODES:
            raise tornado.web.HTTPError(400)
        if action != "pending" and order["state"] == "PENDING":
            completed = action == "pay"
            order["state"] = "COMPLETED" if completed else "FAILED"
            order["paymentDetails"] = [
                {
                    "paymentMode": "UPI_QR",
                    "transactionId": "OM" + secrets.token_hex(10).upper(),
                    "timestamp": _ms(),
                    "amount": order["amount"],
                    "state": order["state"],
                }
            ]
            if not completed:
                order["errorCode"] = "PAYMENT_ERROR"
                order["detailedErrorCode"] = "ZM"
            await self.deliver(order, mode)
        self.redirect(order["_redirect"], status=303)

    async def deliver(self, order: dict[str, Any], mode: str) -> None:
        state = self.state
        completed = order["state"] == "COMPLETED"
        event = {
            "event": "checkout.order.completed" if completed else "checkout.order.failed",
            "type": "CHECKOUT_ORDER_COMPLETED" if completed else "CHECKOUT_ORDER_FAILED",
            "payload": state.order_view(order),
        }
        body = orjson.dumps(event)
        if mode == "lost":
            state.count("webhooks.lost")
            return
        if mode == "delayed":
            task = asyncio.create_task(send_webhook(state, body, delay_s=state.webhook_delay_s))
            state.pending_sends.add(task)
            task.add_done_callback(state.pending_sends.discard)
            return
        copies = state.webhook_copies if mode == "duplicate" else 1
        await asyncio.gather(*(send_webhook(state, body) for _ in range(copies)))


async def send_webhook(state: SimState, body: bytes, delay_s: float = 0.0) -> None:
    if delay_s:
        await asyncio.sleep(delay_s)
    headers = {"Authorization": state.auth_value(), "Content-Type": "application/json"}
    try:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
            resp = await client.post(state.config.webhook_url, content=body, headers=headers)
        state.count(f"webhooks.sent.{resp.status_code}")
    except httpx.HTTPError as exc:
        state.count("webhooks.failed")
        log.warning("webhook to %s failed: %r", state.config.webhook_url, exc)


class FaultsHandler(SimHandler):
    def post(self) -> None:
        body = orjson.loads(self.request.body or b"{}")
        endpoint = body.get("endpoint")
        if endpoint not in ENDPOINTS:
            raise tornado.web.HTTPError(400)
        self.state.faults[endpoint].extend(int(s) for s in body.get("statuses", []))
        self.send_json({"faults": self.state.faults})


class ConfigHandler(SimHandler):
    def post(self) -> None:
        body = orjson.loads(self.request.body or b"{}")
        state = self.state
        mode = body.get("webhook", state.webhook_mode)
        if mode not in WEBHOOK_MODES:
            raise tornado.web.HTTPError(400)
        state.webhook_mode = mode
        state.webhook_copies = int(body.get("copies", state.webhook_copies))
        state.webhook_delay_s = float(body.get("delaySeconds", state.webhook_delay_s))
        state.config.token_ttl_s = int(body.get("tokenTtlSeconds", state.config.token_ttl_s))
        self.send_json({"webhook": state.webhook_mode, "tokenTtlSeconds": state.config.token_ttl_s})


class RevokeHandler(SimHandler):
    def post(self) -> None:
        self.state.tokens.clear()
        self.send_json({"revoked": True})


class ExpireHandler(SimHandler):
    def post(self, merchant_order_id: str) -> None:
        order = self.state.orders.get(merchant_order_id)
        if order is None:
            raise tornado.web.HTTPError(404)
        order["expireAt"] = _ms() - 1
        self.send_json(self.state.order_view(order))


class StatsHandler(SimHandler):
    def get(self) -> None:
        self.send_json(self.state.stats)


class HealthHandler(SimHandler):
    def get(self) -> None:
        self.send_json({"status": "ok"})


def make_app(state: SimState) -> tornado.web.Application:
    args = {"state": state}
    return tornado.web.Application(
        [
            (r"/v1/oauth/token", TokenHandler, args),
            (r"/checkout/v2/pay", PayHandler, args),
            (r"/checkout/v2/order/([^/]+)/status", StatusHandler, args),
            (r"/transact/uat_v2", PayPageHandler, args),
            (r"/transact/uat_v2/pay", PayPageHandler, args),
            (r"/sim/faults", FaultsHandler, args),
            (r"/sim/config", ConfigHandler, args),
            (r"/sim/tokens/revoke", RevokeHandler, args),
            (r"/sim/orders/([^/]+)/expire", ExpireHandler, args),
            (r"/sim/stats", StatsHandler, args),
            (r"/healthz", HealthHandler, args),
        ]
    )


def parse_args(argv: list[str] | None = None) -> SimConfig:
    from core.settings import load_settings

    s = load_settings()
    parser = argparse.ArgumentParser(prog="python -m tooling.phonepe_simulator")
    parser.add_argument("--port", type=int, default=s.phonepe_simulator_port)
    parser.add_argument(
        "--webhook-url", default=f"http://127.0.0.1:{s.restd_port}/api/payments/webhook"
    )
    parser.add_argument("--client-id", default=s.phonepe_client_id or "DEVCONNECT_SIM")
    parser.add_argument("--client-secret", default=s.phonepe_client_secret or "sim-secret")
    parser.add_argument("--client-version", type=int, default=s.phonepe_client_version)
    parser.add_argument("--merchant-id", default=s.phonepe_merchant_id or "DEVCONNECTSIM")
    parser.add_argument("--webhook-username", default=s.phonepe_webhook_username or "devconnect")
    parser.add_argument("--webhook-password", default=s.phonepe_webhook_password or "simpass123")
    parser.add_argument("--token-ttl-s", type=int, default=3600)
    parser.add_argument("--log-level", default=s.log_level)
    return SimConfig(**vars(parser.parse_args(argv)))


async def serve(config: SimConfig) -> None:
    server = make_app(SimState(config)).listen(config.port, address="127.0.0.1")
    log.info("PhonePe simulator on 127.0.0.1:%d, webhooks to %s", config.port, config.webhook_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=config.log_level, format="%(asctime)s simulator %(message)s")
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
