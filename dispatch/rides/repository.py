from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import Uuid, any_, bindparam, func, select, update
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
