"""Batch dispatch on real PostGIS and Redis, in a region of its own, with a controllable clock."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from sqlalchemy import text

from dispatch.core import clock
from dispatch.core.database import transaction
from dispatch.core.redis import RegionKeys
from dispatch.dispatcher.presence import LocationIndex, position_of
from dispatch.events import outbox
from dispatch.events.models import Event
from dispatch.events.outbox import WrittenEvent
from dispatch.rides import service as rides_service
from dispatch.simulation import real_cycle
from dispatch.simulation.repository import WorldRepository
from tests.conftest import TEST_DATABASE_URL
from tests.fixtures.dispatching import (
    current_offer,
    cycle,
    offer_for,
    offered_ride,
    online_driver,
    place,
    request_ride,
)
from tests.fixtures.regions import CENTER


async def events_of(app: Any, user_id: str, kind: str) -> list[Event]:
    async with transaction(app.state) as session:
        result = await session.execute(
            Event.__table__.select().where(Event.user_id == uuid.UUID(user_id), Event.type == kind)
        )
        return list(result.all())


async def test_decline_reoffers_to_the_next_driver_then_gives_up(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    near = await online_driver(client, app, region, 10.501, 10.501)
    far = await online_driver(client, app, region, 10.51, 10.51)
    rider, ride_id = await request_ride(client)

    report = await cycle(app, region)
    assert report.offers_sent == 1
    offer = await offer_for(client, near, ride_id)
    assert await current_offer(client, far) is None

    declined = await client.post(
        f"/v1/driver/offers/{offer['offer_id']}/decline", headers=near.headers
    )
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    await cycle(app, region)
    assert await current_offer(client, near) is None
    second = await offer_for(client, far, ride_id)
    await client.post(f"/v1/driver/offers/{second['offer_id']}/decline", headers=far.headers)

    assert (await cycle(app, region)).offers_sent == 0
    clock.advance(timedelta(seconds=app.state.settings.request_timeout_s + 1))
    assert (await cycle(app, region)).unfulfilled == 1
    ride = (await client.get(f"/v1/rider/rides/{ride_id}", headers=rider.headers)).json()
    assert ride["status"] == "unfulfilled"
    assert len(await events_of(app, rider.id, "ride.unfulfilled")) == 1


async def test_unanswered_offer_expires_and_moves_on(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    slow = await online_driver(client, app, region, 10.501, 10.501)
    other = await online_driver(client, app, region, 10.51, 10.51)
    _, ride_id, offer = await offered_ride(client, app, region, slow)

    clock.advance(timedelta(seconds=app.state.settings.offer_ttl_s + 0.5))
    late = await client.post(f"/v1/driver/offers/{offer['offer_id']}/accept", headers=slow.headers)
    assert late.status_code == 409 and late.json()["error"] == "offer_expired"
    report = await cycle(app, region)
    assert report.expired_offers == 1 and report.offers_sent == 1
    assert len(await events_of(app, slow.id, "offer.expired")) == 1
    moved = await offer_for(client, other, ride_id)
    accepted = await client.post(
        f"/v1/driver/offers/{moved['offer_id']}/accept", headers=other.headers
    )
    assert accepted.status_code == 200 and accepted.json()["status"] == "matched"
    again = await client.post(f"/v1/driver/offers/{offer['offer_id']}/accept", headers=slow.headers)
    assert again.status_code == 409


async def test_a_batchs_events_are_packed_off_the_event_loop(
    client: httpx.AsyncClient, app: Any, region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of `offer.expired` or `ride.unfulfilled` events were built and packed on the
    event loop (27-75 ms for 5,000), stalling every socket of the process; offers already were
    packed in a thread."""
    loop_thread = threading.get_ident()
    packed: list[tuple[str, int]] = []

    def recording_pack(events: Sequence[WrittenEvent], region: str) -> bytes:
        packed.extend((event.type, threading.get_ident()) for event in events)
        return outbox.pack_publishes(events, region)

    monkeypatch.setattr(rides_service, "pack_publishes", recording_pack)
    driver = await online_driver(client, app, region, 10.501, 10.501)
    await offered_ride(client, app, region, driver)
    clock.advance(timedelta(seconds=app.state.settings.offer_ttl_s + 0.5))
    assert (await cycle(app, region)).expired_offers == 1
    clock.advance(timedelta(seconds=app.state.settings.request_timeout_s + 1))
    assert (await cycle(app, region)).unfulfilled == 1
    assert [kind for kind, _ in packed] == ["offer", "offer.expired", "ride.unfulfilled"]
    assert loop_thread not in {thread for _, thread in packed}


async def test_one_driver_gets_one_offer_at_a_time(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    driver = await online_driver(client, app, region, 10.5, 10.5)
    await request_ride(client)
    await request_ride(client, 10.502, 10.502)
    assert (await cycle(app, region)).offers_sent == 1
    assert (await cycle(app, region)).offers_sent == 0
    offer = await offer_for(client, driver)
    accept = await client.post(
        f"/v1/driver/offers/{offer['offer_id']}/accept", headers=driver.headers
    )
    assert accept.status_code == 200
    assert (await cycle(app, region)).offers_sent == 0


async def test_search_radius_widens_with_waiting(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    distant = await online_driver(client, app, region, 10.545, 10.5)  # about 5 km north
    await request_ride(client)
    assert (await cycle(app, region)).offers_sent == 0
    clock.advance(timedelta(seconds=21))
    assert (await cycle(app, region)).offers_sent == 1
    assert await current_offer(client, distant) is not None


async def test_offline_and_silent_drivers_are_not_offered(
    client: httpx.AsyncClient, app: Any, region: str, redis: Any
) -> None:
    gone = await online_driver(client, app, region, 10.5, 10.5)
    await client.post("/v1/driver/status", json={"status": "offline"}, headers=gone.headers)
    # The offline switch cleans the API's own region; this test's region is cleaned by hand.
    await LocationIndex(app.state.redis, RegionKeys(region), 0.01).remove(uuid.UUID(gone.id))
    silent = await online_driver(client, app, region, 10.5, 10.5)
    keys = RegionKeys(region)
    await redis.zadd(keys.drivers_seen, {silent.id: 0})
    await request_ride(client)
    assert (await cycle(app, region)).offers_sent == 0
    assert await redis.zscore(keys.drivers_geo, silent.id) is None


async def test_cancel_withdraws_the_pending_offer(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    driver = await online_driver(client, app, region, 10.5, 10.5)
    rider, ride_id, offer = await offered_ride(client, app, region, driver)
    cancel = await client.post(
        f"/v1/rider/rides/{ride_id}/cancel", json={"reason": "changed plans"}, headers=rider.headers
    )
    assert cancel.status_code == 200
    assert await current_offer(client, driver) is None
    assert len(await events_of(app, driver.id, "offer.withdrawn")) == 1
    accept = await client.post(
        f"/v1/driver/offers/{offer['offer_id']}/accept", headers=driver.headers
    )
    assert accept.status_code == 409


async def test_wrong_state_transitions_are_409(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    driver = await online_driver(client, app, region, 10.5, 10.5)
    rider, ride_id, offer = await offered_ride(client, app, region, driver)
    await client.post(f"/v1/driver/offers/{offer['offer_id']}/accept", headers=driver.headers)
    assert (
        await client.post(f"/v1/driver/rides/{ride_id}/complete", headers=driver.headers)
    ).status_code == 409
    assert (
        await client.post(f"/v1/driver/rides/{ride_id}/start", headers=driver.headers)
    ).status_code == 409
    assert (
        await client.post(f"/v1/driver/rides/{ride_id}/arrive", headers=driver.headers)
    ).status_code == 200
    assert (
        await client.post(f"/v1/driver/rides/{ride_id}/start", headers=driver.headers)
    ).status_code == 200
    cancel = await client.post(f"/v1/rider/rides/{ride_id}/cancel", headers=rider.headers)
    assert cancel.status_code == 409
    assert (
        await client.post(f"/v1/driver/rides/{ride_id}/complete", headers=driver.headers)
    ).status_code == 200
    ride = (await client.get(f"/v1/rider/rides/{ride_id}", headers=rider.headers)).json()
    assert (
        ride["status"] == "completed"
        and ride["receipt"]["driver_cents"] == ride["fare"]["driver_cents"]
    )


async def test_driver_cancel_sends_the_rider_back_to_the_queue(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    first = await online_driver(client, app, region, 10.5, 10.5)
    second = await online_driver(client, app, region, 10.51, 10.5)
    rider, ride_id, offer = await offered_ride(client, app, region, first)
    await client.post(f"/v1/driver/offers/{offer['offer_id']}/accept", headers=first.headers)
    cancel = await client.post(
        f"/v1/driver/rides/{ride_id}/cancel", json={"reason": "flat tyre"}, headers=first.headers
    )
    assert cancel.status_code == 200
    ride = (await client.get(f"/v1/rider/rides/{ride_id}", headers=rider.headers)).json()
    assert ride["status"] == "requested" and ride["driver"] is None
    await cycle(app, region)
    assert await current_offer(client, first) is None
    assert (await current_offer(client, second)) is not None


async def test_a_batch_of_more_than_5000_offers_is_written_and_published_whole(
    app: Any, region: str
) -> None:
    """asyncpg takes at most 32,767 parameters a statement: at 7 an offer, every batch past
    4,681 offers failed and rolled back, so a busy region never got an offer out."""
    n = 5_001
    # A grid 0.008° (~880 m) apart, each driver 11 m from its own request: all are matched.
    lat = np.array([10.1 + (i // 100) * 0.008 for i in range(n)])
    lng = np.array([10.1 + (i % 100) * 0.008 for i in range(n)])
    conn = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        world = WorldRepository(conn)
        policy = await conn.fetchval("SELECT max(version) FROM fare_policy")
        rides = await world.add_requests(region, policy, lat.tolist(), lng.tolist(), clock.utcnow())
        drivers = await world.add_drivers(n)
    finally:
        await conn.close()
    await real_cycle.place_drivers(app.state.redis, region, drivers, lat + 1e-4, lng + 1e-4)
    listener = app.state.redis.pubsub()
    channels = [RegionKeys(app.state.settings.region).user_channel(d) for d in drivers]
    await listener.subscribe(channels[0], channels[-1])
    for _ in range(2):
        await listener.get_message(timeout=1)  # the subscribe confirmations

    report = await cycle(app, region)

    assert report.offers_sent == n
    async with transaction(app.state) as session:
        offers = (
            await session.execute(
                text(
                    "SELECT id, ride_id, driver_id, eta_s, expires_at FROM offer "
                    "WHERE ride_id = ANY(:rides) AND status = 'pending'"
                ),
                {"rides": rides},
            )
        ).all()
        sent = (
            await session.execute(
                text(
                    "SELECT id, user_id, ride_id, payload FROM event "
                    "WHERE type = 'offer' AND ride_id = ANY(:rides) ORDER BY id"
                ),
                {"rides": rides},
            )
        ).all()
    assert len(offers) == len(sent) == n
    by_ride = {ride_id: i for i, ride_id in enumerate(rides)}
    assert all(by_ride[o.ride_id] == drivers.index(o.driver_id) for o in offers[:50])
    first = next(o for o in offers if o.ride_id == rides[0])
    event = next(e for e in sent if e.ride_id == rides[0])
    assert event.user_id == drivers[0]
    assert event.payload == {
        "offer_id": str(first.id),
        "pickup": {"lat": lat[0], "lng": lng[0]},
        "dropoff": {"lat": lat[0] + 0.009, "lng": lng[0]},
        "driver_cents": 1125,
        "currency": "USD",
        "pickup_eta_s": first.eta_s,
        "distance_m": 1200,
        "duration_s": 300,
        "expires_at": first.expires_at.isoformat(),
    }
    live = [await listener.get_message(timeout=5) for _ in range(2)]
    await listener.aclose()
    message = next(m for m in live if m and m["channel"] == channels[0])
    assert json.loads(message["data"]) == {
        "type": "offer",
        "event_id": event.id,
        "ride_id": str(rides[0]),
        **event.payload,
    }


async def test_a_driver_without_an_account_row_does_not_sink_the_batch(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    """A position can outlive its account (deleted while its socket streams until the token's
    expiry): its offer broke the batch's one insert on the foreign key, and nobody was offered."""
    lat, lng = CENTER
    ghost = str(uuid.uuid4())
    await place(app, region, ghost, lat, lng)
    _, ghost_ride = await request_ride(client, lat, lng)
    driver = await online_driver(client, app, region, lat + 0.2, lng + 0.2)
    _, ride = await request_ride(client, lat + 0.2, lng + 0.2)
    report = await cycle(app, region)
    assert report.offered == [(ride, driver.id)]
    await offer_for(client, driver, ride)
    # The planner gave the ghost the nearest ride every cycle until its socket ended: it leaves
    # the index, and its ride goes to a real driver farther away.
    keys = RegionKeys(region)
    assert await position_of(app.state.redis, keys, uuid.UUID(ghost)) is None
    other = await online_driver(client, app, region, lat + 0.002, lng + 0.002)
    assert (await cycle(app, region)).offered == [(ghost_ride, other.id)]
