"""`coop-dispatch seed` closes the rides an earlier run left open through the rides service, as
their users could have: the state machine is respected and every step leaves its events."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dispatch.accounts.models import Role, UserAccount
from dispatch.accounts.repository import AccountRepository
from dispatch.core import clock
from dispatch.core.database import transaction
from dispatch.core.geo import LatLng
from dispatch.core.settings import Settings
from dispatch.events.models import Event
from dispatch.fares.schemas import QuoteCreate
from dispatch.fares.service import create_quote
from dispatch.matching import StraightLineEta
from dispatch.rides import service as rides
from dispatch.rides.models import Offer, OfferStatus, Ride, RideStatus
from dispatch.rides.repository import RideRepository
from loadtests.seeding import seed_load_accounts

TRIP = QuoteCreate(
    pickup=LatLng(lat=40.7580, lng=-73.9855), dropoff=LatLng(lat=40.7061, lng=-74.0087)
)


async def requested(session: Any, settings: Settings, rider_id: uuid.UUID) -> Ride:
    quote = await create_quote(session, settings, StraightLineEta(), rider_id, TRIP)
    return await rides.request_ride(session, rider_id, quote.id)


async def offer(session: Any, ride: Ride, driver_id: uuid.UUID) -> Offer:
    now = clock.utcnow()
    made = Offer(
        id=uuid.uuid4(),
        ride_id=ride.id,
        driver_id=driver_id,
        status=OfferStatus.pending,
        eta_s=120,
        created_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    RideRepository(session).add(made)
    await session.flush()
    return made


async def test_seeding_closes_leftover_rides_through_the_rides_service(
    app: Any, settings: Settings, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials.json"
    first = await seed_load_accounts(settings, 3, 3, credentials, 600)
    assert first.riders == first.drivers == 3
    by_email = {
        a["email"]: uuid.UUID(a["id"])
        for role in ("riders", "drivers")
        for a in json.loads(credentials.read_text())[role]
    }
    riders = [by_email[f"load-rider-{i}@load.coop"] for i in range(3)]
    drivers = [by_email[f"load-driver-{i}@load.coop"] for i in range(3)]

    # An earlier run stopped with: a request holding an offer to driver 0, a ride matched to
    # driver 1, and a ride under way with driver 2.
    async with transaction(app.state) as session:
        waiting = await requested(session, settings, riders[0])
        pending = await offer(session, waiting, drivers[0])
        matched = await requested(session, settings, riders[1])
        matched_offer = await offer(session, matched, drivers[1])
        await rides.accept_offer(session, drivers[1], matched_offer.id)
        under_way = await requested(session, settings, riders[2])
        under_way_offer = await offer(session, under_way, drivers[2])
        await rides.accept_offer(session, drivers[2], under_way_offer.id)
        for step in (RideStatus.arrived, RideStatus.in_progress):
            await rides.advance_by_driver(session, drivers[2], under_way.id, step)
        await session.flush()
        last_event = await session.scalar(select(func.max(Event.id)))

    again = await seed_load_accounts(settings, 3, 3, credentials, 600)
    assert again.created == 0 and again.leftover_rides_closed == 3

    async with app.state.sessionmaker() as session:
        repository = RideRepository(session)

        async def ride(ride_id: uuid.UUID) -> Ride:
            found = await repository.ride(ride_id)
            assert found is not None
            return found

        async def events_since(user_id: uuid.UUID) -> list[str]:
            query = select(Event.type).where(Event.user_id == user_id, Event.id > last_event)
            return list((await session.execute(query.order_by(Event.id))).scalars())

        closed = await ride(waiting.id)
        assert closed.status is RideStatus.cancelled and closed.cancelled_by == "rider"
        assert closed.cancel_reason == "left open by an earlier load test run"
        assert (await repository.offer(pending.id)).status is OfferStatus.withdrawn  # type: ignore[union-attr]
        assert await events_since(riders[0]) == ["ride.cancelled"]
        assert await events_since(drivers[0]) == ["offer.withdrawn"]

        closed = await ride(matched.id)
        assert closed.status is RideStatus.cancelled and closed.cancelled_by == "rider"
        assert await events_since(riders[1]) == ["ride.cancelled"]
        assert await events_since(drivers[1]) == ["ride.cancelled"]

        # Nobody may cancel a ride in progress: its driver completes it, with the receipt.
        closed = await ride(under_way.id)
        assert closed.status is RideStatus.completed and closed.ended_at is not None
        assert await events_since(riders[2]) == ["ride.completed"]
        assert await events_since(drivers[2]) == ["ride.completed"]


async def test_lookups_by_many_users_take_more_than_a_query_has_parameters(
    app: Any, settings: Settings
) -> None:
    """Seeding 20,000 load accounts asked for their open rides with two parameters per account,
    past asyncpg's 32,767 (found in review)."""
    async with transaction(app.state) as session:
        rider = uuid.uuid4()
        session.add(
            UserAccount(
                id=rider,
                email=f"many-{rider.hex[:8]}@load.coop",
                password_hash="not-used",
                name="Many",
                role=Role.rider,
            )
        )
        await session.flush()
        ride = await requested(session, settings, rider)
        strangers = [uuid.uuid4() for _ in range(16_400)]
        found = await RideRepository(session).open_rides_of([*strangers, rider])
        assert [r.id for r in found] == [ride.id]
        await rides.cancel_by_rider(session, rider, ride.id, None)
        # Load accounts are then found by email: the same class, one parameter per email.
        emails = [f"nobody-{i}@load.coop" for i in range(33_000)]
        email = f"many-{rider.hex[:8]}@load.coop"
        assert await AccountRepository(session).ids_by_email([*emails, email]) == {email: rider}
