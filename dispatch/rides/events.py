"""The ride events riders and drivers receive; shapes are documented in docs/api.md."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.events.outbox import record_event
from dispatch.events.repository import EventRepository
from dispatch.rides.models import Offer, Ride


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


def offer_made(session: AsyncSession, offer: Offer, ride: Ride) -> None:
    record_event(
        session,
        offer.driver_id,
        "offer",
        {
            "offer_id": str(offer.id),
            "pickup": {"lat": ride.pickup_lat, "lng": ride.pickup_lng},
            "dropoff": {"lat": ride.dropoff_lat, "lng": ride.dropoff_lng},
            "driver_cents": ride.driver_cents,
            "currency": ride.currency,
            "pickup_eta_s": offer.eta_s,
            "distance_m": ride.distance_m,
            "duration_s": ride.duration_s,
            "expires_at": offer.expires_at.isoformat(),
        },
        ride.id,
    )


async def forget_rider_contact(
    session: AsyncSession, driver_id: uuid.UUID, ride_id: uuid.UUID
) -> None:
    """Once a driver is off a ride, its stored `ride.assigned` loses the rider's contact.

    The event log is replayed to reconnecting clients (`?after=`) and kept; without this a
    driver could read every past rider's phone back, long after the ride.
    """
    await EventRepository(session).clear_rider_contact(driver_id, ride_id)
