"""Wire models of the payment routes (validated once, at the edge: STYLE 3)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from domain.models import Input

ORDER_ID_PATTERN = r"^DC[0-9a-f]{24}$"
OrderState = Literal["PENDING", "COMPLETED", "FAILED", "EXPIRED"]


class PlanView(BaseModel):
    id: str
    name: str
    tier: str
    amount: int = Field(description="In paise")
    currency: str
    durationDays: int


class PlanList(BaseModel):
    items: list[PlanView]


class CreatePaymentBody(Input):
    """``plan`` names a plan; ``amount`` (paise) is accepted only when it equals its price.

    The design's ``{amount}`` alone is accepted when exactly one plan has that price.
    """

    plan: str | None = Field(default=None, min_length=1, max_length=64)
    amount: int | None = Field(default=None, ge=0, le=10**9)


class PaymentCreated(BaseModel):
    orderId: str
    paymentUrl: str
    status: OrderState
    plan: str
    amount: int
    currency: str


class PaymentView(BaseModel):
    orderId: str
    plan: str
    amount: int
    currency: str
    status: OrderState
    paymentUrl: str | None = None
    createdAt: datetime | None = None
    processedAt: datetime | None = None
    membershipUntil: datetime | None = None


class WebhookAck(BaseModel):
    result: Literal["applied", "duplicate", "ignored"]
