"""Payments domain: orders, the webhook, the status API, reconciliation, entitlement.

Every state change goes through ``transition``: one ``find_one_and_update`` whose
filter requires the order to be ``PENDING`` (and to carry the provider order id
we read), so whichever of the webhook, the owner's status check and the
reconciler comes first wins and the others see no match. Only the winner of a
``COMPLETED`` transition calls ``grant``, which extends the membership with a
compare-and-set on the user's ``membershipVersion`` and records the order id in
the membership, so a grant retried after a crash never applies twice.

States: ``PENDING`` → ``COMPLETED`` | ``FAILED`` | ``EXPIRED``; terminal states
never change. ``providerPayload`` keeps what the provider last said.

Domain code (no tornado): restd's handlers and the Celery reconciler share it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from core.keys import Keys
from core.mongo import PAYMENTS, USERS, Doc
from core.ratelimit import Rate, RateLimiter
from core.redis import RedisShards
from core.settings import Settings
from core.tasks import EMAIL_PAYMENT_RECEIPT, TaskSender
from domain.dates import as_utc
from domain.errors import (
    ApiError,
    NotFound,
    TooManyRequests,
    ValidationFailed,
)
from domain.payments import entitlement
from domain.payments.metrics import PaymentMetrics
from domain.payments.models import (
    CreatePaymentBody,
    PaymentCreated,
    PaymentView,
    PlanList,
    PlanView,
)
from domain.payments.phonepe import (
    PhonePeClient,
    PhonePeConfig,
    ProviderError,
)
from domain.payments.plans import Plan, PlanCatalogue

log = logging.getLogger(__name__)

PENDING, COMPLETED, FAILED, EXPIRED = "PENDING", "COMPLETED", "FAILED", "EXPIRED"
TERMINAL = frozenset({COMPLETED, FAILED, EXPIRED})
# The provider's order states that settle an order; anything else (PENDING,
# CREATED, unknown) leaves it pending (PhonePe: parse unknown states leniently).
PROVIDER_TERMINAL = {"COMPLETED": COMPLETED, "FAILED": FAILED, "EXPIRED": EXPIRED}
ORDER_EVENTS = frozenset(
    {"checkout.order.completed", "checkout.order.failed", "pg.order.completed", "pg.order.failed"}
)
# The unique providerOrderId index counts a missing id as a value, so an order
# holds this placeholder until the provider has given it an id.
UNASSIGNED = "unassigned:"
CREATE_BUCKET = "payments-create"
# restd/connections.create_request spends from this bucket; a grant restarts it,
# so the pro budget applies from the moment of payment (GCRA keeps spent time,
# which would otherwise carry the free tier's exhaustion over).
CONNECTION_REQUESTS_BUCKET = "requests-day"
GRANT_CAS_ATTEMPTS = 20


class ProviderFailed(
    ApiError,
    status=502,
    code="provider_error",
    message="The payment provider did not accept the order; try again.",
): ...


class PaymentsUnavailable(
    ApiError,
    status=503,
    code="payments_unavailable",
    message="Payments are not configured on this server.",
): ...


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class PaymentsService:
    def __init__(
        self,
        settings: Settings,
        db: AsyncDatabase[Doc],
        redis: RedisShards,
        keys: Keys,
        metrics: PaymentMetrics,
        client: PhonePeClient | None = None,
        tasks: TaskSender | None = None,
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.db = db
        self.metrics = metrics
        self.plans = PlanCatalogue.from_settings(settings)
        self.client = client or PhonePeClient(PhonePeConfig.from_settings(settings))
        self.limiter = RateLimiter(redis, keys)

    @property
    def payments(self) -> AsyncCollection[Doc]:
        return self.db[PAYMENTS]

    @property
    def users(self) -> AsyncCollection[Doc]:
        return self.db[USERS]

    # -- plans and orders --------------------------------------------------------------

    def plan_list(self) -> PlanList:
        """The catalogue on the wire: a plan's fields by name, but for the price (paise),
        sent as ``amount``, and the duration, sent as ``durationDays``."""
        return PlanList(
            items=[
                PlanView.model_validate(
                    {**asdict(p), "amount": p.amount_paise, "durationDays": p.duration_days}
                )
                for p in self.plans
            ]
        )

    def resolve_plan(self, body: CreatePaymentBody) -> Plan:
        """The plan asked for; a client never sets the price, it may only confirm it."""
        if body.plan is not None:
            plan = self.plans.get(body.plan)
            if plan is None:
                raise ValidationFailed(
                    "No such plan.",
                    code="unknown_plan",
                    details={"field": "plan", "plans": self.plans.ids},
                )
            if body.amount is not None and body.amount != plan.amount_paise:
                raise ValidationFailed(
                    "The amount does not match the plan's price.",
                    code="amount_mismatch",
                    details={"field": "amount", "plan": plan.id, "amount": plan.amount_paise},
                )
            return plan
        if body.amount is None:
            raise ValidationFailed(
                "Name a plan.", code="plan_required", details={"plans": self.plans.ids}
            )
        matches = self.plans.by_amount(body.amount)
        if len(matches) != 1:
            raise ValidationFailed(
                "No single plan has this price; name a plan.",
                code="amount_mismatch",
                details={"field": "amount", "plans": self.plans.ids},
            )
        return matches[0]

    async def create_order(self, user_id: str, body: CreatePaymentBody) -> PaymentCreated:
        plan = self.resolve_plan(body)
        s = self.settings
        await self._spend_create_budget(user_id)
        if not self.client.config.configured:
            raise PaymentsUnavailable(log_message="phonepe client id/secret not set")
        order = self.new_order(user_id, plan)
        order_id = order["merchantOrderId"]
        # Written before the provider hears of it: a crash after the provider call
        # leaves a PENDING order the reconciler settles, never an untracked payment.
        await self.payments.insert_one(order)
        self.metrics.outcome("created")
        log.info(
            "payment %s created for plan %s",
            order_id,
            plan.id,
            extra={"orderId": order_id, "userId": user_id, "amount": plan.amount_paise},
        )
        try:
            created = await self.client.create_payment(
                merchant_order_id=order_id,
                amount_paise=plan.amount_paise,
                redirect_url=s.payment_return_url.replace("{orderId}", order_id),
                expire_after_s=s.phonepe_order_expire_s,
                message=f"DevConnect {plan.name}",
                meta={"udf1": user_id, "udf2": plan.id},
            )
        except ProviderError as exc:
            failure = {"error": str(exc), "httpStatus": exc.status, "code": exc.code}
            await self.transition(order, FAILED, failure, "create")
            self.metrics.outcome("provider_error")
            raise ProviderFailed(
                details={"orderId": order_id}, log_message=f"create {order_id}: {exc}"
            ) from None
        await self.payments.update_one(
            {"_id": order["_id"], "status": PENDING},
            {
                "$set": {
                    "providerOrderId": created.orderId,
                    "paymentUrl": created.redirectUrl,
                    "expireAtMs": created.expireAt or order["expireAtMs"],
                    "updatedAt": _now(),
                }
            },
        )
        return PaymentCreated(
            orderId=order_id,
            paymentUrl=created.redirectUrl,
            status=PENDING,
            plan=plan.id,
            amount=plan.amount_paise,
            currency=plan.currency,
        )

    async def _spend_create_budget(self, user_id: str) -> None:
        s = self.settings
        decision = await self.limiter.hit(
            CREATE_BUCKET,
            f"user:{user_id}",
            Rate(s.rate_payment_create_count, s.rate_payment_create_window_s),
        )
        if not decision.allowed:
            raise TooManyRequests(
                "Too many payment attempts; retry later.",
                log_message=f"payment budget spent by {user_id}",
                retry_after_s=decision.retry_after_s,
            )

    def new_order(self, user_id: str, plan: Plan) -> Doc:
        """A PENDING order for the plan, before the provider has heard of it."""
        s = self.settings
        oid = ObjectId()
        order_id = f"DC{oid}"
        now = _now()
        return {
            "_id": oid,
            "merchantOrderId": order_id,
            "providerOrderId": UNASSIGNED + order_id,
            "userId": user_id,
            "planId": plan.id,
            "tier": plan.tier,
            "durationDays": plan.duration_days,
            "amount": plan.amount_paise,
            "currency": plan.currency,
            "status": PENDING,
            "providerPayload": None,
            "paymentUrl": None,
            "createdAt": now,
            "updatedAt": now,
            "processedAt": None,
            "expireAtMs": _ms(now) + s.phonepe_order_expire_s * 1000,
            "nextCheckAtMs": _ms(now) + int(s.payments_reconcile_delay_s * 1000),
            "checks": 0,
            "grantPending": False,
        }

    async def order_view(self, user_id: str, order_id: str) -> PaymentView:
        """The owner's view; a pending order is first checked with the status API
        (the browser's return from the pay page proves nothing)."""
        order = await self.payments.find_one({"merchantOrderId": order_id})
        if order is None or order.get("userId") != user_id:
            raise NotFound("No such order.", code="unknown_order", log_message=f"order {order_id}")
        if order["status"] == PENDING and not order["providerOrderId"].startswith(UNASSIGNED):
            try:
                order = await self.check_with_provider(order, "status")
            except ProviderError as exc:
                log.warning("status check for %s failed: %s", order_id, exc)
        return self.view(order)

    @staticmethod
    def view(order: Doc) -> PaymentView:
        """The owner's view: the stored amount, currency and status as they are; the ids
        under their wire names; the pay link only while pending; timestamps in UTC."""
        pending = order["status"] == PENDING
        return PaymentView.model_validate(
            {
                **order,
                "orderId": order["merchantOrderId"],
                "plan": order["planId"],
                "paymentUrl": order.get("paymentUrl") if pending else None,
                "createdAt": as_utc(order.get("createdAt")),
                "processedAt": as_utc(order.get("processedAt")),
                "membershipUntil": as_utc(order.get("membershipUntil")),
            }
        )

    # -- the one transition ------------------------------------------------------------

    async def transition(
        self,
        order: Doc,
        new: str,
        payload: Any,
        source: str,
        provider_order_id: str | None = None,
    ) -> Doc | None:
        """PENDING → ``new``, at most once; returns the updated order, None if it was
        no longer pending (another path settled it first)."""
        if new not in TERMINAL:
            raise ValueError(f"not a terminal state: {new}")
        now = _now()
        changes: dict[str, Any] = {
            "status": new,
            "updatedAt": now,
            "processedAt": now,
            "providerPayload": payload,
            "settledBy": source,
            "grantPending": new == COMPLETED,
        }
        current_provider_id = order["providerOrderId"]
        if provider_order_id and current_provider_id.startswith(UNASSIGNED):
            changes["providerOrderId"] = provider_order_id
        updated = await self.payments.find_one_and_update(
            {
                "merchantOrderId": order["merchantOrderId"],
                "providerOrderId": current_provider_id,
                "status": PENDING,
            },
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            return None
        order_id = updated["merchantOrderId"]
        log.info(
            "payment %s: %s -> %s by %s",
            order_id,
            PENDING,
            new,
            source,
            extra={
                "orderId": order_id,
                "providerOrderId": updated["providerOrderId"],
                "userId": updated["userId"],
                "state": new,
                "source": source,
            },
        )
        self.metrics.transitions.labels(new, source).inc()
        if source != "create":
            self.metrics.outcome(new.lower())
        if new == COMPLETED:
            await self.grant(updated)
        return updated

    async def grant(self, order: Doc) -> bool:
        """Extend the payer's membership for this order, exactly once."""
        order_id = order["merchantOrderId"]
        user_oid = ObjectId(order["userId"])
        now = _now()
        membership: dict[str, Any] | None = None
        for _ in range(GRANT_CAS_ATTEMPTS):
            user = await self.users.find_one(
                {"_id": user_oid}, projection={"membership": 1, "membershipVersion": 1}
            )
            if user is None:
                log.error("payment %s: the payer %s no longer exists", order_id, order["userId"])
                break
            if order_id in entitlement.granted_orders(user):
                break  # granted before (a retry after a crash between the two writes)
            version = user.get("membershipVersion")
            candidate = entitlement.extended(
                user,
                tier_name=order["tier"],
                plan_id=order["planId"],
                order_id=order_id,
                days=int(order["durationDays"]),
                now=now,
            )
            same_version: Doc = (
                {"membershipVersion": version}
                if isinstance(version, int)
                else {"membershipVersion": {"$exists": False}}
            )
            result = await self.users.update_one(
                {"_id": user_oid, **same_version},
                {"$set": {"membership": candidate, "membershipVersion": (version or 0) + 1}},
            )
            if result.modified_count == 1:
                membership = candidate
                break
        else:
            # Left grantPending: the reconciler retries it.
            raise RuntimeError(f"membership grant for {order_id} kept losing races")
        await self.payments.update_one(
            {"_id": order["_id"]},
            {
                "$set": {
                    "grantPending": False,
                    "grantedAt": now,
                    **({"membershipUntil": membership["expiresAt"]} if membership else {}),
                }
            },
        )
        if membership is None:
            return False
        await self.limiter.reset(CONNECTION_REQUESTS_BUCKET, f"user:{order['userId']}")
        self.metrics.grants.inc()
        log.info(
            "membership %s extended to %s by payment %s",
            order["userId"],
            membership["expiresAt"].isoformat(),
            order_id,
            extra={"orderId": order_id, "userId": order["userId"], "planId": order["planId"]},
        )
        if self.tasks is not None:  # the receipt (workers/email.py); best effort, logged there
            await self.tasks.send(EMAIL_PAYMENT_RECEIPT, order["userId"], order["merchantOrderId"])
        return True

    # -- provider status ---------------------------------------------------------------

    async def check_with_provider(self, order: Doc, source: str) -> Doc:
        """Ask the status API; settle the order if the provider has. Raises ProviderError."""
        order_id = order["merchantOrderId"]
        status, raw = await self.client.order_status(order_id)
        if status.amount is not None and status.amount != order["amount"]:
            log.error(
                "payment %s: provider amount %s != ours %s; not settling",
                order_id,
                status.amount,
                order["amount"],
                extra={"orderId": order_id},
            )
            return order
        new = PROVIDER_TERMINAL.get(status.state.upper())
        if new is None:
            return order
        updated = await self.transition(order, new, raw, source, provider_order_id=status.orderId)
        if updated is not None:
            return updated
        return await self.payments.find_one({"_id": order["_id"]}) or order
