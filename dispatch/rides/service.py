"""Ride lifecycle. Every change locks the ride row; PostgreSQL constraints have the last word."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.service import vehicle_of
from dispatch.core.clock import utcnow
from dispatch.core.database import violated_constraint
from dispatch.core.errors import Conflict, Gone, NotFound
from dispatch.core.geo import LatLng, distance_m
from dispatch.events.outbox import (
    WrittenEvent,
    pack_publishes,
    publish_packed,
    record_event,
)
from dispatch.fares.repository import FareRepository
from dispatch.fares.service import rider_quote
from dispatch.rides import messages
from dispatch.rides.models import (
    RIDER_OPEN_INDEX,
    TERMINAL_STATUSES,
    Offer,
    OfferStatus,
    Ride,
    RideStatus,
)
from dispatch.rides.repository import DispatchRepository, OpenRequest, RideRepository
from dispatch.rides.schemas import (
    AssignedDriver,
    DriverRideRead,
    Earnings,
    EarningsLine,
    Fare,
    OfferRead,
    Receipt,
    RiderContact,
    RideRead,
)
from dispatch.rides.state import Actor, allowed


async def request_ride(session: AsyncSession, rider_id: uuid.UUID, quote_id: uuid.UUID) -> Ride:
    """Retries are deduplicated by the route's `Idempotency-Key` (`dispatch/idempotency/`)."""
    repository = RideRepository(session)
    quote = await rider_quote(session, rider_id, quote_id)
    now = utcnow()
    if quote.expires_at <= now:
        raise Gone("the quote has expired; ask for a new one", code="quote_expired")
    if await repository.by_quote(quote.id) is not None:
        raise Conflict("this quote was already used for a ride", code="quote_used")
    if await repository.open_ride_of_rider(rider_id) is not None:
        raise _already_open()
    ride = Ride(
        id=uuid.uuid4(),
        rider_id=rider_id,
        quote_id=quote.id,
        region_id=quote.region_id,
        status=RideStatus.requested,
        pickup_lat=quote.pickup_lat,
        pickup_lng=quote.pickup_lng,
        dropoff_lat=quote.dropoff_lat,
        dropoff_lng=quote.dropoff_lng,
        distance_m=quote.distance_m,
        duration_s=quote.duration_s,
        total_cents=quote.total_cents,
        driver_cents=quote.driver_cents,
        coop_cents=quote.coop_cents,
        currency=quote.currency,
        policy_version=quote.policy_version,
        requested_at=now,
    )
    try:
        async with session.begin_nested():
            repository.add(ride)
    except IntegrityError as exc:
        if violated_constraint(exc) == RIDER_OPEN_INDEX:
            raise _already_open() from None
        raise Conflict("this quote was already used for a ride", code="quote_used") from None
    record_event(session, rider_id, "ride.searching", {"status": ride.status.value}, ride.id)
    return ride


def _already_open() -> Conflict:
    return Conflict("you already have a ride in progress", code="ride_already_open")


async def rider_ride(
    session: AsyncSession, rider_id: uuid.UUID, ride_id: uuid.UUID, *, lock: bool = False
) -> Ride:
    ride = await RideRepository(session).ride(ride_id, for_update=lock)
    if ride is None or ride.rider_id != rider_id:
        raise NotFound("ride not found", code="ride_not_found")
    return ride


async def driver_ride(
    session: AsyncSession, driver_id: uuid.UUID, ride_id: uuid.UUID, *, lock: bool = False
) -> Ride:
    ride = await RideRepository(session).ride(ride_id, for_update=lock)
    if ride is None or ride.driver_id != driver_id:
        raise NotFound("ride not found", code="ride_not_found")
    return ride


def _require(ride: Ride, target: RideStatus, actor: Actor) -> None:
    if not allowed(ride.status, target, actor):
        raise Conflict(
            f"a {ride.status.value} ride cannot become {target.value}", code="invalid_transition"
        )


async def _withdraw_pending_offers(session: AsyncSession, ride: Ride, now: datetime) -> None:
    repository = RideRepository(session)
    offers = await repository.pending_offers_of_ride(ride.id)
    await repository.set_offer_status([o.id for o in offers], OfferStatus.withdrawn, now)
    for offer in offers:
        record_event(
            session, offer.driver_id, "offer.withdrawn", {"offer_id": str(offer.id)}, ride.id
        )


async def cancel_by_rider(
    session: AsyncSession, rider_id: uuid.UUID, ride_id: uuid.UUID, reason: str | None
) -> Ride:
    await rider_ride(session, rider_id, ride_id)
    # Lock order is offer, then ride (as accept_offer and the dispatcher take them); taking the
    # ride first deadlocked against a concurrent accept of the ride's pending offer.
    await RideRepository(session).pending_offers_of_ride(ride_id)
    ride = await rider_ride(session, rider_id, ride_id, lock=True)
    if ride.status is RideStatus.cancelled and ride.cancelled_by == Actor.rider.value:
        return ride
    _require(ride, RideStatus.cancelled, Actor.rider)
    now = utcnow()
    await _withdraw_pending_offers(session, ride, now)
    ride.status = RideStatus.cancelled
    ride.ended_at = now
    ride.cancelled_by = Actor.rider.value
    ride.cancel_reason = reason
    payload = {"status": ride.status.value, "cancelled_by": "rider", "reason": reason}
    record_event(session, rider_id, "ride.cancelled", payload, ride.id)
    if ride.driver_id is not None:
        record_event(session, ride.driver_id, "ride.cancelled", payload, ride.id)
        await messages.forget_rider_contact(session, ride.driver_id, ride.id)
    await session.flush()
    return ride


async def accept_offer(session: AsyncSession, driver_id: uuid.UUID, offer_id: uuid.UUID) -> Ride:
    repository = RideRepository(session)
    offer = await repository.offer(offer_id, for_update=True)
    if offer is None or offer.driver_id != driver_id:
        raise NotFound("offer not found", code="offer_not_found")
    if offer.status is OfferStatus.accepted:
        # One accept wins and every other one is told so; a client that retries safely sends an
        # Idempotency-Key and gets the winning answer replayed instead.
        raise Conflict("you already accepted this offer", code="offer_already_accepted")
    if offer.status is not OfferStatus.pending:
        raise Conflict(f"the offer was {offer.status.value}", code="offer_not_pending")
    now = utcnow()
    if offer.expires_at <= now:
        raise Conflict("the offer has expired", code="offer_expired")
    ride = await repository.ride(offer.ride_id, for_update=True)
    if ride is None or ride.status is not RideStatus.requested:
        raise Conflict("the ride is no longer available", code="ride_not_available")
    offer.status = OfferStatus.accepted
    offer.responded_at = now
    ride.status = RideStatus.matched
    ride.driver_id = driver_id
    ride.matched_at = now
    ride.pickup_eta_s = offer.eta_s
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict("you already have an active ride", code="driver_busy") from None
    await messages.ride_matched(session, ride)
    return ride


async def decline_offer(session: AsyncSession, driver_id: uuid.UUID, offer_id: uuid.UUID) -> Offer:
    offer = await RideRepository(session).offer(offer_id, for_update=True)
    if offer is None or offer.driver_id != driver_id:
        raise NotFound("offer not found", code="offer_not_found")
    if offer.status is OfferStatus.declined:
        return offer
    if offer.status is not OfferStatus.pending:
        raise Conflict(f"the offer was {offer.status.value}", code="offer_not_pending")
    offer.status = OfferStatus.declined
    offer.responded_at = utcnow()
    await session.flush()
    return offer


@dataclass(frozen=True)
class CompletionCheck:
    """How a completion is judged: the driver's last indexed position (None when unknown) against
    the dropoff, and the trip's time against its distance at the fastest plausible speed."""

    locate_driver: Callable[[Ride], Awaitable[tuple[float, float] | None]]
    max_distance_m: float
    max_speed_mps: float


def completion_flags(
    ride: Ride, position: tuple[float, float] | None, now: datetime, check: CompletionCheck
) -> list[dict[str, Any]]:
    flags: list[dict[str, Any]] = []
    if position is None:
        flags.append({"flag": "position_unknown"})
    else:
        away_m = distance_m(position[0], position[1], ride.dropoff_lat, ride.dropoff_lng)
        if away_m > check.max_distance_m:
            flags.append({"flag": "far_from_dropoff", "distance_m": round(away_m)})
    if ride.started_at is not None:
        took_s = (now - ride.started_at).total_seconds()
        fastest_s = ride.distance_m / check.max_speed_mps
        if took_s < fastest_s:
            flags.append(
                {"flag": "too_soon", "took_s": round(took_s, 3), "fastest_s": round(fastest_s)}
            )
    return flags


async def advance_by_driver(
    session: AsyncSession,
    driver_id: uuid.UUID,
    ride_id: uuid.UUID,
    target: RideStatus,
    completion: CompletionCheck | None = None,
) -> Ride:
    ride = await driver_ride(session, driver_id, ride_id, lock=True)
    if ride.status is target:
        return ride
    _require(ride, target, Actor.driver)
    now = utcnow()
    ride.status = target
    if target is RideStatus.arrived:
        ride.arrived_at = now
        record_event(session, ride.rider_id, "ride.arrived", {"status": target.value}, ride.id)
    elif target is RideStatus.in_progress:
        ride.started_at = now
        record_event(session, ride.rider_id, "ride.started", {"status": target.value}, ride.id)
    elif target is RideStatus.completed:
        ride.ended_at = now
        if completion is not None:
            position = await completion.locate_driver(ride)
            ride.completion_flags = completion_flags(ride, position, now, completion)
        receipt = (await receipt_of(session, ride)).model_dump(mode="json")
        payload = {"status": target.value, "receipt": receipt}
        record_event(session, ride.rider_id, "ride.completed", payload, ride.id)
        record_event(session, driver_id, "ride.completed", payload, ride.id)
        await messages.forget_rider_contact(session, driver_id, ride.id)
    await session.flush()
    return ride


async def cancel_by_driver(
    session: AsyncSession, driver_id: uuid.UUID, ride_id: uuid.UUID, reason: str
) -> Ride:
    """The driver steps back before pickup: the rider goes back to the queue, not home."""
    ride = await driver_ride(session, driver_id, ride_id, lock=True)
    _require(ride, RideStatus.requested, Actor.driver)
    now = utcnow()
    ride.status = RideStatus.requested
    ride.driver_id = None
    ride.matched_at = None
    ride.arrived_at = None
    ride.pickup_eta_s = None
    ride.requested_at = now
    ride.cancel_reason = reason
    ride.cancelled_by = Actor.driver.value
    record_event(
        session,
        ride.rider_id,
        "ride.driver_cancelled",
        {"status": "requested", "reason": reason},
        ride.id,
    )
    record_event(session, ride.rider_id, "ride.searching", {"status": "requested"}, ride.id)
    record_event(
        session,
        driver_id,
        "ride.cancelled",
        {"status": "cancelled", "cancelled_by": "driver"},
        ride.id,
    )
    await messages.forget_rider_contact(session, driver_id, ride.id)
    await session.flush()
    return ride


async def receipts_of(session: AsyncSession, rides: Sequence[Ride]) -> dict[uuid.UUID, Receipt]:
    """Receipts of completed rides, by ride id, in two statements however many rides."""
    if not rides:
        return {}
    repository = FareRepository(session)
    quotes = await repository.quotes([ride.quote_id for ride in rides])
    policies = await repository.policies_by_version({ride.policy_version for ride in rides})
    return {
        ride.id: Receipt(
            ride_id=ride.id,
            total_cents=ride.total_cents,
            driver_cents=ride.driver_cents,
            coop_cents=ride.coop_cents,
            currency=ride.currency,
            breakdown=quotes[ride.quote_id].breakdown,
            policy_version=ride.policy_version,
            proposal_id=policies[ride.policy_version].proposal_id,
            distance_m=ride.distance_m,
            duration_s=ride.duration_s,
            completed_at=ride.ended_at or utcnow(),
        )
        for ride in rides
    }


async def receipt_of(session: AsyncSession, ride: Ride) -> Receipt:
    return (await receipts_of(session, [ride]))[ride.id]


async def assigned_drivers(
    session: AsyncSession, driver_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, AssignedDriver]:
    profiles = await RideRepository(session).driver_profiles(driver_ids)
    return {
        user.id: AssignedDriver(id=user.id, name=user.name, vehicle=vehicle_of(driver))
        for user, driver in profiles.values()
    }


async def assigned_driver(session: AsyncSession, driver_id: uuid.UUID) -> AssignedDriver | None:
    return (await assigned_drivers(session, [driver_id])).get(driver_id)


async def rider_views(session: AsyncSession, rides: Sequence[Ride]) -> list[RideRead]:
    """The rider's views of rides in a fixed number of statements: a list never queries per ride."""
    drivers = await assigned_drivers(session, {r.driver_id for r in rides if r.driver_id})
    receipts = await receipts_of(session, [r for r in rides if r.status is RideStatus.completed])
    return [
        RideRead(
            id=ride.id,
            status=ride.status.value,
            pickup=LatLng(lat=ride.pickup_lat, lng=ride.pickup_lng),
            dropoff=LatLng(lat=ride.dropoff_lat, lng=ride.dropoff_lng),
            fare=Fare(
                total_cents=ride.total_cents,
                driver_cents=ride.driver_cents,
                coop_cents=ride.coop_cents,
                currency=ride.currency,
                policy_version=ride.policy_version,
            ),
            distance_m=ride.distance_m,
            duration_s=ride.duration_s,
            driver=drivers.get(ride.driver_id) if ride.driver_id else None,
            pickup_eta_s=ride.pickup_eta_s,
            requested_at=ride.requested_at,
            matched_at=ride.matched_at,
            arrived_at=ride.arrived_at,
            started_at=ride.started_at,
            ended_at=ride.ended_at,
            cancelled_by=ride.cancelled_by,
            cancel_reason=ride.cancel_reason,
            receipt=receipts.get(ride.id),
        )
        for ride in rides
    ]


async def rider_view(session: AsyncSession, ride: Ride) -> RideRead:
    return (await rider_views(session, [ride]))[0]


async def driver_views(session: AsyncSession, rides: Sequence[Ride]) -> list[DriverRideRead]:
    """The driver's views of rides in a fixed number of statements; the rider's contact only on
    rides still under way."""
    riders = await RideRepository(session).users(
        {ride.rider_id for ride in rides if ride.status not in TERMINAL_STATUSES}
    )
    views = []
    for ride in rides:
        user = riders.get(ride.rider_id) if ride.status not in TERMINAL_STATUSES else None
        views.append(
            DriverRideRead(
                id=ride.id,
                status=ride.status.value,
                pickup=LatLng(lat=ride.pickup_lat, lng=ride.pickup_lng),
                dropoff=LatLng(lat=ride.dropoff_lat, lng=ride.dropoff_lng),
                driver_cents=ride.driver_cents,
                coop_cents=ride.coop_cents,
                total_cents=ride.total_cents,
                currency=ride.currency,
                pickup_eta_s=ride.pickup_eta_s,
                rider=RiderContact(name=user.name, phone=user.phone) if user else None,
                matched_at=ride.matched_at,
                ended_at=ride.ended_at,
            )
        )
    return views


async def driver_view(session: AsyncSession, ride: Ride) -> DriverRideRead:
    return (await driver_views(session, [ride]))[0]


def offer_view(offer: Offer, ride: Ride) -> OfferRead:
    return OfferRead(
        offer_id=offer.id,
        ride_id=ride.id,
        status=offer.status.value,
        pickup=LatLng(lat=ride.pickup_lat, lng=ride.pickup_lng),
        dropoff=LatLng(lat=ride.dropoff_lat, lng=ride.dropoff_lng),
        driver_cents=ride.driver_cents,
        currency=ride.currency,
        pickup_eta_s=offer.eta_s,
        expires_at=offer.expires_at,
    )


async def earnings(
    session: AsyncSession,
    driver_id: uuid.UUID,
    limit: int,
    before: datetime | None,
    currency: str,
) -> Earnings:
    """`currency` (the co-op's setting) labels the totals when no ride is listed."""
    found = await RideRepository(session).rides_of_driver(
        driver_id, [RideStatus.completed], limit, before
    )
    lines = [
        EarningsLine(
            ride_id=ride.id,
            completed_at=ride.ended_at or ride.requested_at,
            gross_cents=ride.total_cents,
            coop_commission_cents=ride.coop_cents,
            net_cents=ride.driver_cents,
            currency=ride.currency,
            policy_version=ride.policy_version,
        )
        for ride in found
    ]
    return Earnings(
        rides=lines,
        total_gross_cents=sum(line.gross_cents for line in lines),
        total_coop_commission_cents=sum(line.coop_commission_cents for line in lines),
        total_net_cents=sum(line.net_cents for line in lines),
        currency=lines[0].currency if lines else currency,
    )


# The dispatcher's part of the lifecycle: offers time out, requests are given up, batches are
# offered. Each is one statement whatever the batch size, and writes its events in it.

UNFULFILLED_PAYLOAD = json.dumps({"status": "unfulfilled", "reason": "no driver accepted in time"})


async def expire_offers(session: AsyncSession, region: str, now: datetime) -> int:
    rows = await DispatchRepository(session).expire_offers(region, now)
    if rows:
        publish_packed(session, await asyncio.to_thread(_expired, rows, session.info["region"]))
    return len(rows)


def _expired(rows: Sequence[Row[int, uuid.UUID, uuid.UUID, str]], region: str) -> bytes:
    """The `offer.expired` events packed for publishing (a worker thread: thousands a batch)."""
    return pack_publishes(
        [
            WrittenEvent(event_id, driver_id, ride_id, "offer.expired", json.dumps({"offer_id": o}))
            for event_id, driver_id, ride_id, o in rows
        ],
        region,
    )


async def give_up_requests(
    session: AsyncSession, region: str, now: datetime, timeout_s: float
) -> int:
    """Requests no driver accepted within `timeout_s` (and with no offer out) end unfulfilled."""
    before = now - timedelta(seconds=timeout_s)
    rows = await DispatchRepository(session).give_up_requests(
        region, now, before, UNFULFILLED_PAYLOAD
    )
    if rows:
        publish_packed(session, await asyncio.to_thread(_given_up, rows, session.info["region"]))
    return len(rows)


def _given_up(rows: Sequence[Row[int, uuid.UUID, uuid.UUID]], region: str) -> bytes:
    return pack_publishes(
        [
            WrittenEvent(event_id, rider_id, ride_id, "ride.unfulfilled", UNFULFILLED_PAYLOAD)
            for event_id, rider_id, ride_id in rows
        ],
        region,
    )


@dataclass(frozen=True)
class OfferBatch:
    """A batch's offers ready to write, in plan order (one list entry per offer)."""

    offer_ids: list[str]
    ride_ids: list[str]
    driver_ids: list[str]
    eta_s: list[int]
    payloads: list[str]
    created_at: datetime
    expires_at: datetime


def random_uuids(n: int) -> list[str]:
    """`n` version-4 UUIDs as text: `str(uuid.uuid4())` costs more than the rest of an offer."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    return [
        f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        for h in (text[i : i + 32] for i in range(0, 32 * n, 32))
    ]


def draft_offers(
    assignments: Sequence[tuple[str, str, int]],
    rides: Mapping[str, OpenRequest],
    now: datetime,
    ttl_s: float,
) -> OfferBatch:
    """Offers for (ride_id, driver_id, eta_s) assignments; `rides` are the open requests by id.

    CPU only (thousands of payloads): the dispatcher runs it off the event loop.
    """
    expires_at = now + timedelta(seconds=ttl_s)
    expires_text = expires_at.isoformat()
    offer_ids = random_uuids(len(assignments))
    return OfferBatch(
        offer_ids=offer_ids,
        ride_ids=[ride_id for ride_id, _, _ in assignments],
        driver_ids=[driver_id for _, driver_id, _ in assignments],
        eta_s=[int(eta_s) for _, _, eta_s in assignments],
        payloads=[
            messages.offer_payload(offer_id, rides[ride_id], eta_s, expires_text)
            for offer_id, (ride_id, _, eta_s) in zip(offer_ids, assignments, strict=True)
        ],
        created_at=now,
        expires_at=expires_at,
    )


async def make_offers(session: AsyncSession, batch: OfferBatch) -> list[tuple[str, str]]:
    """Write the batch's pending offers and their `offer` events; (ride_id, driver_id) of each
    offer made (one that meets another pending offer of its ride or driver is not)."""
    if not batch.offer_ids:
        return []
    rows = await DispatchRepository(session).insert_offers(
        batch.offer_ids,
        batch.ride_ids,
        batch.driver_ids,
        batch.eta_s,
        batch.payloads,
        batch.created_at,
        batch.expires_at,
    )
    offered, packed = await asyncio.to_thread(_made, batch, rows, session.info["region"])
    publish_packed(session, packed)
    return offered


def _made(
    batch: OfferBatch, rows: Sequence[Row[int, uuid.UUID]], region: str
) -> tuple[list[tuple[str, str]], bytes]:
    position = {ride_id: i for i, ride_id in enumerate(batch.ride_ids)}
    made = sorted((position[str(ride_id)], event_id) for event_id, ride_id in rows)
    offered = [(batch.ride_ids[i], batch.driver_ids[i]) for i, _ in made]
    written = [
        WrittenEvent(event_id, batch.driver_ids[i], batch.ride_ids[i], "offer", batch.payloads[i])
        for i, event_id in made
    ]
    return offered, pack_publishes(written, region)
