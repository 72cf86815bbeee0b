"""The PhonePe webhook: verify, cross-check, then one transition.

The ``Authorization`` header (sha256 hex of ``username:password``, set on the
PhonePe dashboard) is compared in constant time before the body is parsed, and
every webhook is refused while the credentials are unset (fail closed). Then
the order must exist and the merchant id, amount and provider order id must
match what we stored. Unknown events and fields are ignored with a log line.
A repeated webhook finds the order no longer PENDING and is acknowledged as a
duplicate: PhonePe may deliver more than once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import NoReturn

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from domain.errors import BadRequest, NotFound, Unauthorized
from domain.payments.models import WebhookAck
from domain.payments.service import ORDER_EVENTS, PROVIDER_TERMINAL, UNASSIGNED, PaymentsService

log = logging.getLogger(__name__)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class WebhookPayload(_Lenient):
    merchantId: str | None = None
    merchantOrderId: str | None = None
    orderId: str | None = None
    state: str | None = None
    amount: int | None = None


class WebhookEnvelope(_Lenient):
    event: str | None = None
    type: str | None = None  # deprecated by PhonePe in favour of event
    payload: WebhookPayload | None = None


def webhook_auth_value(username: str, password: str) -> str:
    """PhonePe's webhook Authorization header: sha256 hex of "username:password"."""
    return hashlib.sha256(f"{username}:{password}".encode()).hexdigest()


def webhook_authorized(header: str | None, username: str, password: str) -> bool:
    if not header:
        return False
    expected = webhook_auth_value(username, password).encode()
    return hmac.compare_digest(header.strip().lower().encode("utf-8", "replace"), expected)


def authorize_webhook(service: PaymentsService, authorization: str | None) -> None:
    """Refuse (401) unless the webhook credentials are configured and the header matches."""
    s = service.settings
    username, password = s.phonepe_webhook_username, s.phonepe_webhook_password
    if not (username and password and s.phonepe_merchant_id):
        service.metrics.webhook("rejected_unconfigured")
        raise Unauthorized(
            "Webhook credentials are not configured; every webhook is refused.",
            code="webhook_not_configured",
        )
    # Verified before the body is even parsed.
    if not webhook_authorized(authorization, username, password):
        service.metrics.webhook("rejected_auth")
        raise Unauthorized(
            "The Authorization header does not match the webhook credentials.",
            code="invalid_signature",
            log_message="webhook with a missing or wrong Authorization",
        )


async def handle_webhook(
    service: PaymentsService, authorization: str | None, raw: bytes
) -> WebhookAck:
    authorize_webhook(service, authorization)
    s = service.settings
    try:
        data = orjson.loads(raw)
        envelope = WebhookEnvelope.model_validate(data)
    except (orjson.JSONDecodeError, ValidationError):
        service.metrics.webhook("rejected_malformed")
        raise BadRequest("The webhook body is not a PhonePe event.", code="invalid_json") from None
    event = envelope.event or ""
    if event not in ORDER_EVENTS:
        log.info("webhook event %r ignored", event, extra={"event": event})
        service.metrics.webhook("ignored")
        return WebhookAck(result="ignored")
    p = envelope.payload
    if p is None or not p.merchantOrderId or not p.state:
        service.metrics.webhook("rejected_malformed")
        raise BadRequest(
            "The webhook payload lacks merchantOrderId or state.", code="invalid_payload"
        )
    order_id = p.merchantOrderId
    if p.merchantId != s.phonepe_merchant_id:
        _refuse(service, "merchant", "The merchant id is not ours.", order_id)
    order = await service.payments.find_one({"merchantOrderId": order_id})
    if order is None:
        service.metrics.webhook("rejected_unknown_order")
        raise NotFound("No such order.", code="unknown_order", log_message=f"webhook {order_id}")
    if p.amount != order["amount"]:
        _refuse(service, "amount", "The amount does not match the order.", order_id)
    stored = order["providerOrderId"]
    if not stored.startswith(UNASSIGNED) and p.orderId != stored:
        _refuse(service, "order", "The provider order id does not match.", order_id)
    new = PROVIDER_TERMINAL.get(p.state.upper())
    if new is None:
        log.info("webhook %s for %s: state %s, nothing to do", event, order_id, p.state)
        service.metrics.webhook("ignored")
        return WebhookAck(result="ignored")
    updated = await service.transition(order, new, data, "webhook", provider_order_id=p.orderId)
    if updated is not None:
        service.metrics.webhook("applied")
        return WebhookAck(result="applied")
    current = await service.payments.find_one({"_id": order["_id"]})
    if current is not None and current["status"] != new:
        # A terminal state never changes; retrying would not help, so still 2xx.
        log.error(
            "payment %s: webhook says %s but the order is %s",
            order_id,
            new,
            current["status"],
            extra={"orderId": order_id},
        )
        service.metrics.webhook("conflict")
    else:
        service.metrics.webhook("duplicate")
    return WebhookAck(result="duplicate")


def _refuse(service: PaymentsService, reason: str, message: str, order_id: str) -> NoReturn:
    service.metrics.webhook(f"rejected_{reason}")
    raise BadRequest(
        message, code=f"{reason}_mismatch", log_message=f"webhook {order_id}: {reason} mismatch"
    )
