"""The messages riders and drivers receive about their rides (outbox payloads); shapes are in
docs/api.md. The outbox itself is `dispatch/events/`."""

from __future__ import annotations

import json
import uuid
from functools import cache

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.events.outbox import record_event
from dispatch.events.repository import EventRepository
from dispatch.rides.models import Ride
from dispatch.rides.repository import OpenRequest


async def ride_matched(session: AsyncSession, ride: Ride) -> None:
    from dispatch.rides.service import assigned_driver, driver_view

    assert ride.driver_id is not None
    driver = await assigned_driver(session, ride.driver_id)
    rider_payload = {
        "status": ride.status.value,
        "driver": driver.model_dump(mode="json") if driver else None,
        "vehicle": driver.vehicle.model_dump(mode="json") if driver and driver.vehicle else None,
        "eta_s": ride.pickup_eta_s,
    }
    record_event(session, ride.rider_id, "ride.matched", rider_payload, ride.id)
    assignment = (await driver_view(session, ride)).model_dump(mode="json")
    record_event(
        session,
        ride.driver_id,
        "ride.assigned",
        {"ride": assignment, "rider_id": str(ride.rider_id)},
        ride.id,
    )


def offer_payload(
    offer_id: uuid.UUID | str, ride: OpenRequest, pickup_eta_s: int, expires_at: str
) -> str:
    """The `offer` event's payload as JSON text, byte for byte what `json.dumps` makes of it.

    `expires_at` is ISO 8601. A batch formats thousands of these; the template costs a fraction
    of building and dumping the dicts.
    """
    return (
        f'{{"offer_id": "{offer_id}", '
        f'"pickup": {{"lat": {ride.pickup_lat!r}, "lng": {ride.pickup_lng!r}}}, '
        f'"dropoff": {{"lat": {ride.dropoff_lat!r}, "lng": {ride.dropoff_lng!r}}}, '
        f'"driver_cents": {int(ride.driver_cents)}, "currency": {_quoted(ride.currency)}, '
        f'"pickup_eta_s": {int(pickup_eta_s)}, "distance_m": {int(ride.distance_m)}, '
        f'"duration_s": {int(ride.duration_s)}, "expires_at": "{expires_at}"}}'
    )


@cache
def _quoted(text: str) -> str:
    return json.dumps(text)


async def forget_rider_contact(
    session: AsyncSession, driver_id: uuid.UUID, ride_id: uuid.UUID
) -> None:
    """Once a driver is off a ride, its stored `ride.assigned` loses the rider's contact.

    The event log is replayed to reconnecting clients (`?after=`) and kept; without this a
    driver could read every past rider's phone back, long after the ride.
    """
    await EventRepository(session).clear_rider_contact(driver_id, ride_id)
