from decimal import Decimal

import pytest

from dispatch.fares.pricing import FareRules, price

RULES = FareRules(
    base_cents=250,
    per_km_cents=120,
    per_minute_cents=35,
    minimum_cents=800,
    booking_fee_cents=150,
    commission_rate=Decimal("0.10"),
    commission_cap_cents=500,
)


def test_metered_fare_and_split() -> None:
    fare = price(RULES, distance_m=5000, duration_s=600)
    # 250 + 600 + 350 = 1200 metered, + 150 booking fee
    assert fare.total_cents == 1350
    assert fare.coop_cents == 135
    assert fare.driver_cents == 1215
    assert sum(fare.breakdown.values()) == fare.total_cents


def test_minimum_fare_applies_before_booking_fee() -> None:
    fare = price(RULES, distance_m=500, duration_s=60)
    assert fare.breakdown["minimum_fare_adjustment_cents"] == 800 - (250 + 60 + 35)
    assert fare.total_cents == 800 + 150


def test_commission_is_capped() -> None:
    fare = price(RULES, distance_m=60_000, duration_s=5400)
    assert fare.coop_cents == 500
    assert fare.driver_cents == fare.total_cents - 500


@pytest.mark.parametrize(("rate", "total", "expected"), [("0.125", 1000, 125), ("0.1", 1005, 101)])
def test_commission_rounds_half_up(rate: str, total: int, expected: int) -> None:
    rules = FareRules(0, 0, 0, total, 0, Decimal(rate), 10_000)
    assert price(rules, 0, 0).coop_cents == expected
