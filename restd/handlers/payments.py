"""The payment routes; the domain lives in ``service`` (STYLE 1)."""

from __future__ import annotations

from domain.payments.models import (
    CreatePaymentBody,
    PaymentCreated,
    PaymentView,
    PlanList,
    WebhookAck,
)
from domain.payments.service import PaymentsService
from domain.payments.webhook import authorize_webhook, handle_webhook
from restd.handlers.base import ApiHandler
from restd.openapi import Link, Operation

TAG = "payments"


class PaymentsHandler(ApiHandler):
    @property
    def payments(self) -> PaymentsService:
        return self.ctx.payments


class PlansHandler(PaymentsHandler):
    operations = {
        "get": Operation(
            "The paid plans and their prices",
            TAG,
            PlanList,
            auth=False,
            links=(
                Link(
                    "PayForFirstPlan",
                    "post",
                    "/api/payments/create",
                    body={"plan": "$response.body#/items/0/id"},
                    description="Start paying for the first plan listed",
                ),
            ),
        )
    }

    def get(self) -> None:
        self.write_model(self.payments.plan_list())


class CreatePaymentHandler(PaymentsHandler):
    operations = {
        "post": Operation(
            "Start paying for a plan; answers the provider's pay page URL",
            TAG,
            PaymentCreated,
            status=201,
            body=CreatePaymentBody,
            errors=(403, 502, 503),
            error_text={
                502: "PhonePe refused the order or stayed unreachable after the retries; "
                "details.orderId names the order, now FAILED",
                503: "Payments are not configured on this server (no PhonePe client "
                "credentials); no Retry-After, since waiting does not help",
            },
            retry_after_optional=(503,),
            links=(
                Link(
                    "GetOrder",
                    "get",
                    "/api/payments/{order_id}",
                    {"order_id": "$response.body#/orderId"},
                    description="The order's state",
                ),
            ),
        )
    }

    async def post(self) -> None:
        me = await self.require_user()
        body = self.parse_body(CreatePaymentBody)
        self.write_model(await self.payments.create_order(me, body), 201)


class WebhookHandler(PaymentsHandler):
    """PhonePe's server-to-server callback, authenticated by its Authorization hash."""

    reads_session_cookie = False
    operations = {
        "post": Operation(
            "PhonePe webhook (Authorization: sha256 of username:password)",
            TAG,
            WebhookAck,
            auth=False,
            security=("phonepeWebhookAuth",),
            errors=(400, 401, 404),
        )
    }

    def max_body_bytes(self) -> int:
        return self.ctx.settings.phonepe_webhook_body_max_bytes

    def prepare(self) -> None:
        super().prepare()
        # Checked as soon as the headers are in: a caller without the credentials
        # is refused before its body is read at all.
        if self.request.method == "POST":
            authorize_webhook(self.payments, self.request.headers.get("Authorization"))

    async def post(self) -> None:
        authorization = self.request.headers.get("Authorization")
        self.write_model(await handle_webhook(self.payments, authorization, self.body))


class PaymentHandler(PaymentsHandler):
    operations = {"get": Operation("One of my orders", TAG, PaymentView, errors=(404,))}

    async def get(self, order_id: str) -> None:
        me = await self.require_user()
        self.write_model(await self.payments.order_view(me, order_id))
