from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Row, Uuid, any_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.models import Driver, UserAccount
from dispatch.rides.models import (
    ACTIVE_STATUSES,
    OPEN_STATUSES,
    Offer,
    OfferStatus,
    Ride,
    RideStatus,
)


class RideRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ride(self, ride_id: uuid.UUID, *, for_update: bool = False) -> Ride | None:
        return await self.session.get(
            Ride, ride_id, with_for_update=for_update, populate_existing=for_update
        )

    async def offer(self, offer_id: uuid.UUID, *, for_update: bool = False) -> Offer | None:
        return await self.session.get(
            Offer, offer_id, with_for_update=for_update, populate_existing=for_update
        )

    async def by_quote(self, quote_id: uuid.UUID) -> Ride | None:
        query = select(Ride).where(Ride.quote_id == quote_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def open_ride_of_rider(self, rider_id: uuid.UUID) -> Ride | None:
        query = (
            select(Ride).where(Ride.rider_id == rider_id, Ride.status.in_(OPEN_STATUSES)).limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def active_ride_of_driver(self, driver_id: uuid.UUID) -> Ride | None:
        query = select(Ride).where(Ride.driver_id == driver_id, Ride.status.in_(ACTIVE_STATUSES))
        return (await self.session.execute(query)).scalar_one_or_none()

    async def rides_of_rider(
        self, rider_id: uuid.UUID, limit: int, before: datetime | None
    ) -> Sequence[Ride]:
        query = select(Ride).where(Ride.rider_id == rider_id)
        if before is not None:
            query = query.where(Ride.requested_at < before)
        query = query.order_by(Ride.requested_at.desc()).limit(limit)
        return (await self.session.execute(query)).scalars().all()

    async def rides_of_driver(
        self,
        driver_id: uuid.UUID,
        statuses: Sequence[RideStatus],
        limit: int,
        before: datetime | None,
    ) -> Sequence[Ride]:
        query = select(Ride).where(Ride.driver_id == driver_id, Ride.status.in_(statuses))
        if before is not None:
            query = query.where(Ride.requested_at < before)
        query = query.order_by(Ride.requested_at.desc()).limit(limit)
        return (await self.session.execute(query)).scalars().all()

    async def flagged_rides(self, limit: int, before: datetime | None) -> Sequence[Ride]:
        query = select(Ride).where(
            Ride.status == RideStatus.completed, func.jsonb_array_length(Ride.completion_flags) > 0
        )
        if before is not None:
            query = query.where(Ride.ended_at < before)
        query = query.order_by(Ride.ended_at.desc()).limit(limit)
        return (await self.session.execute(query)).scalars().all()

    async def pending_offers_of_ride(self, ride_id: uuid.UUID) -> Sequence[Offer]:
        query = select(Offer).where(Offer.ride_id == ride_id, Offer.status == OfferStatus.pending)
        return (await self.session.execute(query.with_for_update())).scalars().all()

    async def pending_offer_of_driver(self, driver_id: uuid.UUID) -> Offer | None:
        query = select(Offer).where(
            Offer.driver_id == driver_id, Offer.status == OfferStatus.pending
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def driver_profiles(
        self, driver_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[UserAccount, Driver]]:
        if not driver_ids:
            return {}
        query = (
            select(UserAccount, Driver)
            .join(Driver, Driver.user_id == UserAccount.id)
            .where(UserAccount.id.in_(driver_ids))
        )
        return {user.id: (user, driver) for user, driver in await self.session.execute(query)}

    async def users(self, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, UserAccount]:
        if not user_ids:
            return {}
        query = select(UserAccount).where(UserAccount.id.in_(user_ids))
        return {user.id: user for user in (await self.session.execute(query)).scalars()}

    async def set_offer_status(
        self, offer_ids: Sequence[uuid.UUID], status: OfferStatus, at: datetime
    ) -> None:
        if offer_ids:
            await self.session.execute(
                update(Offer).where(Offer.id.in_(offer_ids)).values(status=status, responded_at=at)
            )

    async def open_rides_of(self, user_ids: Collection[uuid.UUID]) -> Sequence[Ride]:
        """Rides not yet ended whose rider or driver is one of these users."""
        # One array parameter, not one per id: asyncpg allows 32,767 parameters, which a list
        # of two per user passed at ~16,000 seeded load-test accounts.
        ids = bindparam("user_ids", list(user_ids), type_=ARRAY(Uuid))
        query = select(Ride).where(
            Ride.status.in_(OPEN_STATUSES),
            (Ride.rider_id == any_(ids)) | (Ride.driver_id == any_(ids)),
        )
        return (await self.session.execute(query.order_by(Ride.requested_at))).scalars().all()

    async def ride_counts(self, region_id: str) -> dict[RideStatus, int]:
        query = (
            select(Ride.status, func.count())
            .where(Ride.region_id == region_id)
            .group_by(Ride.status)
        )
        return {status: count for status, count in await self.session.execute(query)}

    async def offer_counts(self, region_id: str) -> dict[OfferStatus, int]:
        query = (
            select(Offer.status, func.count())
            .join(Ride, Ride.id == Offer.ride_id)
            .where(Ride.region_id == region_id)
            .group_by(Offer.status)
        )
        return {status: count for status, count in await self.session.execute(query)}

    async def completed_trips(
        self, since: datetime, until: datetime
    ) -> list[tuple[uuid.UUID, int, int]]:
        """(driver, distance, duration) of every ride completed in [since, until)."""
        query = select(Ride.driver_id, Ride.distance_m, Ride.duration_s).where(
            Ride.status == RideStatus.completed,
            Ride.ended_at >= since,
            Ride.ended_at < until,
            Ride.driver_id.is_not(None),
        )
        rows = (await self.session.execute(query)).all()
        return [(row[0], int(row[1]), int(row[2])) for row in rows if row[0] is not None]

    def add(self, item: Ride | Offer) -> None:
        self.session.add(item)


class OpenRequest(NamedTuple):
    """A request waiting for an offer: where, since when, and what its offer shows the driver."""

    id: uuid.UUID
    pickup_lat: float
    pickup_lng: float
    requested_at: datetime
    dropoff_lat: float
    dropoff_lng: float
    driver_cents: int
    currency: str
    distance_m: int
    duration_s: int


class DispatchRepository:
    """What a dispatch batch reads and writes, as a fixed number of statements whatever its size.

    The writes that cause events insert their outbox rows (`event`) in the same statement and
    return what publishing needs; parameters are arrays (`unnest`), so a batch of any size is one
    statement of a few parameters (asyncpg allows 32,767 per statement).
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def try_region_lock(self, key: int) -> bool:
        return bool(await self.session.scalar(_TRY_LOCK, {"key": key}))

    async def expire_offers(
        self, region: str, now: datetime
    ) -> Sequence[Row[int, uuid.UUID, uuid.UUID, str]]:
        """Pending offers past their time become `expired`; (event_id, driver_id, ride_id,
        offer_id) of each `offer.expired` event written."""
        params = {"region": region, "now": now}
        return (await self.session.execute(_EXPIRE_OFFERS, params)).all()

    async def give_up_requests(
        self, region: str, now: datetime, requested_before: datetime, payload: str
    ) -> Sequence[Row[int, uuid.UUID, uuid.UUID]]:
        """Requests unanswered since `requested_before`, with no pending offer, become
        `unfulfilled`; (event_id, rider_id, ride_id) of each `ride.unfulfilled` event written."""
        params = {"region": region, "now": now, "before": requested_before, "payload": payload}
        return (await self.session.execute(_GIVE_UP, params)).all()

    async def open_requests(self, region: str) -> list[OpenRequest]:
        """Requests without a pending offer, oldest first, locked (SKIP LOCKED: another
        dispatcher's batch keeps its own)."""
        result = await self.session.execute(_OPEN_REQUESTS, {"region": region})
        return [OpenRequest._make(row) for row in result]

    async def tried_drivers(self, ride_ids: Sequence[uuid.UUID]) -> Sequence[Row[str, list[str]]]:
        """(ride_id, driver_ids) of the rides with answered offers, ids as text: one row a ride,
        as the batch's exclusions grow by a driver per ride each time its offer runs out."""
        return (await self.session.execute(_TRIED, {"ride_ids": ride_ids})).all()

    async def busy_drivers(self) -> set[str]:
        """Drivers with a pending offer or an active ride."""
        return {str(d) for d in (await self.session.execute(_BUSY)).scalars()}

    async def earnings_since(
        self, since: datetime
    ) -> Sequence[Row[uuid.UUID, int | None, datetime | None]]:
        """(driver_id, cents, last ended_at) of the rides completed since `since`."""
        return (await self.session.execute(_EARNED, {"since": since})).all()

    async def insert_offers(
        self,
        offer_ids: Sequence[str],
        ride_ids: Sequence[str],
        driver_ids: Sequence[str],
        eta_s: Sequence[int],
        payloads: Sequence[str],
        now: datetime,
        expires_at: datetime,
    ) -> Sequence[Row[int, uuid.UUID]]:
        """Pending offers and their `offer` events (payloads as JSON text, in offer order), one
        statement; an offer that meets another pending one (ride or driver) is skipped. Returns
        (event_id, ride_id) of each offer made."""
        params = {
            "ids": offer_ids,
            "ride_ids": ride_ids,
            "driver_ids": driver_ids,
            "eta_s": eta_s,
            "payloads": payloads,
            "now": now,
            "expires_at": expires_at,
        }
        return (await self.session.execute(_INSERT_OFFERS, params)).all()

    async def without_driver_row(self, driver_ids: Collection[str]) -> list[str]:
        """Those of `driver_ids` with no `driver` row (an account deleted while its position
        streams)."""
        found = await self.session.execute(_WITHOUT_DRIVER_ROW, {"ids": list(driver_ids)})
        return [str(d) for d in found.scalars()]


# Plain SQL constants: compiled once, and asyncpg keeps them prepared.
_WITHOUT_DRIVER_ROW = text("""
SELECT id FROM unnest(CAST(:ids AS uuid[])) AS d(id)
WHERE NOT EXISTS (SELECT 1 FROM driver WHERE driver.user_id = d.id)
""")

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")

_EXPIRE_OFFERS = text("""
WITH expired AS (
    UPDATE offer SET status = 'expired', responded_at = :now
    WHERE status = 'pending' AND expires_at <= :now
      AND ride_id IN (SELECT id FROM ride WHERE region_id = :region)
    RETURNING id, driver_id, ride_id
)
INSERT INTO event (user_id, ride_id, type, payload)
SELECT driver_id, ride_id, 'offer.expired', jsonb_build_object('offer_id', id::text)
FROM expired
RETURNING id, user_id, ride_id, payload ->> 'offer_id'
""")

_GIVE_UP = text("""
WITH given_up AS (
    UPDATE ride SET status = 'unfulfilled', ended_at = :now
    WHERE region_id = :region AND status = 'requested' AND requested_at <= :before
      AND NOT EXISTS (
          SELECT 1 FROM offer WHERE offer.ride_id = ride.id AND offer.status = 'pending'
      )
    RETURNING id, rider_id
)
INSERT INTO event (user_id, ride_id, type, payload)
SELECT rider_id, id, 'ride.unfulfilled', CAST(:payload AS jsonb) FROM given_up
RETURNING id, user_id, ride_id
""")

_OPEN_REQUESTS = text("""
SELECT id, pickup_lat, pickup_lng, requested_at, dropoff_lat, dropoff_lng, driver_cents,
       currency, distance_m, duration_s
FROM ride
WHERE region_id = :region AND status = 'requested'
  AND NOT EXISTS (
      SELECT 1 FROM offer WHERE offer.ride_id = ride.id AND offer.status = 'pending'
  )
ORDER BY requested_at
FOR UPDATE SKIP LOCKED
""")

_TRIED = text("""
SELECT ride_id::text, array_agg(driver_id::text) FROM offer
WHERE ride_id = ANY(CAST(:ride_ids AS uuid[])) AND status <> 'pending'
GROUP BY ride_id
""")

_BUSY = text("""
SELECT driver_id FROM offer WHERE status = 'pending'
UNION
SELECT driver_id FROM ride
WHERE status IN ('matched', 'arrived', 'in_progress') AND driver_id IS NOT NULL
""")

_EARNED = text("""
SELECT driver_id, sum(driver_cents), max(ended_at) FROM ride
WHERE status = 'completed' AND ended_at >= :since
GROUP BY driver_id
""")

_INSERT_OFFERS = text("""
WITH batch AS (
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:ride_ids AS uuid[]), CAST(:driver_ids AS uuid[]),
        CAST(:eta_s AS integer[]), CAST(:payloads AS text[])
    ) WITH ORDINALITY AS b(id, ride_id, driver_id, eta_s, payload, position)
), made AS (
    INSERT INTO offer (id, ride_id, driver_id, status, eta_s, created_at, expires_at)
    SELECT id, ride_id, driver_id, 'pending', eta_s,
           CAST(:now AS timestamptz), CAST(:expires_at AS timestamptz)
    FROM batch
    -- A position can outlive its account: such a driver is skipped, not the whole batch.
    WHERE EXISTS (SELECT 1 FROM driver WHERE driver.user_id = batch.driver_id)
    ORDER BY position
    ON CONFLICT DO NOTHING
    RETURNING id
)
INSERT INTO event (user_id, ride_id, type, payload)
SELECT batch.driver_id, batch.ride_id, 'offer', CAST(batch.payload AS jsonb)
FROM batch JOIN made ON made.id = batch.id
ORDER BY batch.position
RETURNING id, ride_id
""")
