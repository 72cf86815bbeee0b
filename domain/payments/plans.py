"""The plan catalogue: ids, prices in paise and durations, all from settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.settings import PaymentPlan, Settings


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    tier: str
    amount_paise: int
    currency: str
    duration_days: int

    @classmethod
    def of(cls, plan_id: str, spec: PaymentPlan) -> Plan:
        return cls(
            plan_id, spec.name, spec.tier, spec.amount_paise, spec.currency, spec.duration_days
        )


class PlanCatalogue:
    def __init__(self, plans: list[Plan]) -> None:
        self._plans = {p.id: p for p in plans}

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanCatalogue:
        return cls([Plan.of(pid, spec) for pid, spec in settings.payment_plans.items()])

    def __iter__(self) -> Iterator[Plan]:
        return iter(self._plans.values())

    def get(self, plan_id: str) -> Plan | None:
        return self._plans.get(plan_id)

    def by_amount(self, amount_paise: int) -> list[Plan]:
        return [p for p in self._plans.values() if p.amount_paise == amount_paise]

    @property
    def ids(self) -> list[str]:
        return list(self._plans)
