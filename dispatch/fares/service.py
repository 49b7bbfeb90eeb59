from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.clock import utcnow
from dispatch.core.errors import NotFound, Unavailable, Unprocessable
from dispatch.core.settings import Settings
from dispatch.fares.areas import ServiceAreas
from dispatch.fares.models import FarePolicy, Quote
from dispatch.fares.pricing import FareRules, price
from dispatch.fares.repository import FareRepository
from dispatch.fares.schemas import QuoteCreate
from dispatch.matching.eta import EtaModel


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
