"""Many simultaneous requests against few drivers, with two dispatchers racing each other."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import TEST_DATABASE_URL
from tests.e2e.harness import Socket, Stack, auth, online_socket, register, running_stack

pytestmark = pytest.mark.e2e

RIDERS = 50
DRIVERS = 20


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    with running_stack(
        tmp_path, request_timeout_s="12", offer_ttl_s="3", batch_interval_s="0.25"
    ) as running:
        yield running


async def drive(
    base: str,
    socket: Socket,
    account: dict[str, Any],
    stop: asyncio.Event,
    position: tuple[float, float],
) -> int:
    """Accept every offer, then arrive, start and complete at once; returns rides completed.

    Like a real app, the driver keeps sending its position, so a slow run never goes silent."""
    done = 0
    handled: set[str] = set()
    loop = asyncio.get_running_loop()
    last_position = loop.time()
    async with httpx.AsyncClient(base_url=base, headers=auth(account), timeout=10) as http:
        while not stop.is_set():
            if loop.time() - last_position > 4:
                await socket.send({"type": "location", "lat": position[0], "lng": position[1]})
                last_position = loop.time()
            offers = [m for m in socket.of_type("offer") if m["offer_id"] not in handled]
            if not offers:
                await asyncio.sleep(0.05)
                continue
            offer = offers[0]
            handled.add(offer["offer_id"])
            accepted = await http.post(f"/v1/driver/offers/{offer['offer_id']}/accept")
            if accepted.status_code != 200:
                assert accepted.status_code == 409, accepted.text
                continue
            ride_id = offer["ride_id"]
            for action in ("arrive", "start", "complete"):
                step = await http.post(f"/v1/driver/rides/{ride_id}/{action}")
                assert step.status_code == 200, step.text
            done += 1
    return done


async def test_fifty_requests_twenty_drivers(stack: Stack) -> None:
    api_a = stack.start_api("api-a").url
    api_b = stack.start_api("api-b").url
    assert api_a and api_b
    stack.start_dispatcher("dispatcher-1")
    stack.start_dispatcher("dispatcher-2")
    rng = random.Random(7)

    drivers = [register(api_a if i % 2 else api_b, "driver", f"Driver {i}") for i in range(DRIVERS)]
    riders = [register(api_a, "rider", f"Rider {i}") for i in range(RIDERS)]
    sockets = []
    positions = [
        (40.75 + rng.uniform(-0.01, 0.01), -73.99 + rng.uniform(-0.01, 0.01)) for _ in drivers
    ]
    for i, account in enumerate(drivers):
        sockets.append(
            await online_socket(api_a if i % 2 else api_b, account["token"], *positions[i])
        )

    stop = asyncio.Event()
    workers = [
        asyncio.create_task(
            drive(api_a if i % 2 else api_b, sockets[i], drivers[i], stop, positions[i])
        )
        for i in range(DRIVERS)
    ]

    async def request(rider: dict[str, Any], base: str) -> str:
        async with httpx.AsyncClient(base_url=base, headers=auth(rider), timeout=20) as http:
            pickup = {
                "lat": 40.75 + rng.uniform(-0.01, 0.01),
                "lng": -73.99 + rng.uniform(-0.01, 0.01),
            }
            dropoff = {"lat": 40.72, "lng": -74.0}
            quote = await http.post("/v1/rider/quotes", json={"pickup": pickup, "dropoff": dropoff})
            assert quote.status_code == 201, quote.text
            ride = await http.post("/v1/rider/rides", json={"quote_id": quote.json()["id"]})
            assert ride.status_code == 201, ride.text
            return str(ride.json()["id"])

    ride_ids = await asyncio.gather(
        *(request(r, api_a if i % 2 else api_b) for i, r in enumerate(riders))
    )

    database = await asyncpg.connect(TEST_DATABASE_URL.replace("postgresql://", "postgres://"))
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            rows = await database.fetch(
                "SELECT id::text, status, driver_id FROM ride WHERE id::text = ANY($1)", ride_ids
            )
            open_rides = [
                r for r in rows if r["status"] in ("requested", "matched", "arrived", "in_progress")
            ]
            if not open_rides or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        stop.set()
        completed = sum(await asyncio.gather(*workers))
        statuses = {r["status"] for r in rows}
        assert not open_rides, f"{len(open_rides)} rides still open"
        assert statuses <= {"completed", "unfulfilled"}
        assert completed == sum(1 for r in rows if r["status"] == "completed")
        assert completed >= DRIVERS

        doubles = await database.fetchval(
            "SELECT count(*) FROM (SELECT driver_id FROM ride WHERE status IN ('matched','arrived','in_progress') "
            "AND driver_id IS NOT NULL GROUP BY driver_id HAVING count(*) > 1) d"
        )
        assert doubles == 0
        accepted_twice = await database.fetchval(
            "SELECT count(*) FROM (SELECT ride_id FROM offer WHERE status = 'accepted' AND ride_id::text = ANY($1) "
            "GROUP BY ride_id HAVING count(*) > 1) r",
            ride_ids,
        )
        assert accepted_twice == 0
        overlapping = await database.fetchval(
            "SELECT count(*) FROM ride a JOIN ride b ON a.driver_id = b.driver_id AND a.id < b.id "
            "WHERE a.status = 'completed' AND b.status = 'completed' AND a.id::text = ANY($1) AND b.id::text = ANY($1) "
            "AND tstzrange(a.matched_at, a.ended_at) && tstzrange(b.matched_at, b.ended_at)",
            ride_ids,
        )
        assert overlapping == 0
    finally:
        await database.close()
        for socket in sockets:
            await socket.close()
