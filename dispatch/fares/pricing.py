"""The fare formula, as the members voted it: integer cents, rounded half up."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class FareRules:
    base_cents: int
    per_km_cents: int
    per_minute_cents: int
    minimum_cents: int
    booking_fee_cents: int
    commission_rate: Decimal
    commission_cap_cents: int


@dataclass(frozen=True)
class Fare:
    total_cents: int
    driver_cents: int
    coop_cents: int
    breakdown: dict[str, int]


def round_cents(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price(rules: FareRules, distance_m: int, duration_s: int) -> Fare:
    distance_cents = round_cents(Decimal(rules.per_km_cents) * distance_m / 1000)
    time_cents = round_cents(Decimal(rules.per_minute_cents) * duration_s / 60)
    metered = rules.base_cents + distance_cents + time_cents
    minimum_adjustment = max(0, rules.minimum_cents - metered)
    total = metered + minimum_adjustment + rules.booking_fee_cents
    coop = min(round_cents(rules.commission_rate * total), rules.commission_cap_cents)
    return Fare(
        total_cents=total,
        driver_cents=total - coop,
        coop_cents=coop,
        breakdown={
            "base_cents": rules.base_cents,
            "distance_cents": distance_cents,
            "time_cents": time_cents,
            "minimum_fare_adjustment_cents": minimum_adjustment,
            "booking_fee_cents": rules.booking_fee_cents,
        },
    )
