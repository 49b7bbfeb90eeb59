from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.clock import utcnow
from dispatch.core.errors import Conflict, NotFound, Unavailable, Unprocessable
from dispatch.core.settings import Settings
from dispatch.fares.areas import ServiceAreas
from dispatch.fares.models import FarePolicy, Quote
from dispatch.fares.pricing import FareRules, price
from dispatch.fares.repository import FareRepository
from dispatch.fares.schemas import QuoteCreate
from dispatch.matching.eta import EtaModel

POLICY_FIELDS = (
    "base_cents",
    "per_km_cents",
    "per_minute_cents",
    "minimum_cents",
    "booking_fee_cents",
    "commission_rate",
    "commission_cap_cents",
)


def rate_text(rate: Decimal) -> str:
    """A commission rate as the API and the governance log write it: four decimals."""
    return str(rate.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def amended(base: FarePolicy, changes: Mapping[str, int | str]) -> dict[str, Any]:
    """The policy's fields with `changes` (cents as int, the rate as a decimal string) applied."""
    fields: dict[str, Any] = {name: getattr(base, name) for name in POLICY_FIELDS}
    for name, value in changes.items():
        fields[name] = Decimal(value) if name == "commission_rate" else int(value)
    return fields


def rules_of(policy: FarePolicy) -> FareRules:
    return FareRules(
        base_cents=policy.base_cents,
        per_km_cents=policy.per_km_cents,
        per_minute_cents=policy.per_minute_cents,
        minimum_cents=policy.minimum_cents,
        booking_fee_cents=policy.booking_fee_cents,
        commission_rate=policy.commission_rate,
        commission_cap_cents=policy.commission_cap_cents,
    )


async def latest_policy(session: AsyncSession) -> FarePolicy | None:
    """The newest version, in force or not yet."""
    return await FareRepository(session).latest_policy()


async def policy(session: AsyncSession, version: int) -> FarePolicy | None:
    return await FareRepository(session).policy(version)


async def amend_policy(
    session: AsyncSession,
    changes: Mapping[str, int | str],
    *,
    effective_at: datetime,
    proposal_id: uuid.UUID | None,
) -> tuple[FarePolicy, FarePolicy]:
    """Write the next version: the newest with `changes` applied. It never takes effect before
    the version it builds on, so versions apply in the order they were written. Returns (base,
    new); the caller serialises writers (governance holds its audit lock)."""
    repository = FareRepository(session)
    base = await repository.latest_policy()
    if base is None:
        raise Conflict("there is no fare policy to amend", code="no_fare_policy")
    version = FarePolicy(
        version=base.version + 1,
        currency=base.currency,
        effective_at=max(effective_at, base.effective_at),
        proposal_id=proposal_id,
        **amended(base, changes),
    )
    repository.add(version)
    await session.flush()
    return base, version


async def current_policy(session: AsyncSession) -> FarePolicy:
    policy = await FareRepository(session).policy_in_force(utcnow())
    if policy is None:
        raise Unavailable("no fare policy is in force", code="no_fare_policy")
    return policy


async def create_quote(
    session: AsyncSession, settings: Settings, eta: EtaModel, rider_id: uuid.UUID, body: QuoteCreate
) -> Quote:
    repository = FareRepository(session)
    pickup, dropoff = body.pickup, body.dropoff
    region = await repository.region_covering(pickup.lat, pickup.lng)
    if region is None:
        raise Unprocessable(
            "pickup is outside the co-op's service area", code="outside_service_area"
        )
    if await repository.region_covering(dropoff.lat, dropoff.lng) is None:
        raise Unprocessable(
            "dropoff is outside the co-op's service area", code="outside_service_area"
        )
    policy = await current_policy(session)
    trip = eta.estimate(pickup.lat, pickup.lng, dropoff.lat, dropoff.lng)
    fare = price(rules_of(policy), trip.distance_m, trip.duration_s)
    now = utcnow()
    quote = Quote(
        id=uuid.uuid4(),
        rider_id=rider_id,
        region_id=region.id,
        pickup_lat=pickup.lat,
        pickup_lng=pickup.lng,
        dropoff_lat=dropoff.lat,
        dropoff_lng=dropoff.lng,
        distance_m=trip.distance_m,
        duration_s=trip.duration_s,
        total_cents=fare.total_cents,
        driver_cents=fare.driver_cents,
        coop_cents=fare.coop_cents,
        currency=policy.currency,
        breakdown=fare.breakdown,
        policy_version=policy.version,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.quote_ttl_s),
    )
    repository.add(quote)
    await session.flush()
    return quote


async def rider_quote(session: AsyncSession, rider_id: uuid.UUID, quote_id: uuid.UUID) -> Quote:
    quote = await FareRepository(session).quote(quote_id)
    if quote is None or quote.rider_id != rider_id:
        raise NotFound("quote not found", code="quote_not_found")
    return quote


async def service_areas(session: AsyncSession) -> ServiceAreas:
    return ServiceAreas(await FareRepository(session).service_areas_geojson())
