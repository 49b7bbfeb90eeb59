"""PostgreSQL connections killed (`pg_terminate_backend`) under load.

Riders request and cancel rides, drivers accept and complete them, a dispatcher runs batches,
while every few hundred milliseconds every other backend of the test database is terminated.
Clients retry a 503 with the same Idempotency-Key, as a mobile app would. Afterwards: no 500 was
ever returned, every acknowledged (2xx) action is in the database, and every intent (key) had
exactly one effect.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from dispatch.app import create_app
from dispatch.core.database import transaction
from dispatch.dispatcher.cycle import run_cycle
from tests.conftest import TEST_DATABASE_URL, Account
from tests.fixtures.dispatching import place_many
from tests.fixtures.regions import CENTER
from tests.reliability.conftest import bulk_accounts, record_figures

MAX_TRIES = 60


class Client:
    """Retries 503s and dropped connections with the same key; records every answer."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.statuses: Counter[int] = Counter()
        self.retries = 0
        self.reasons: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = defaultdict(list)

    async def post(
        self, path: str, account: Account, body: Any = None, key: str | None = None
    ) -> httpx.Response:
        headers = account.headers | ({"Idempotency-Key": key} if key else {})
        for _ in range(MAX_TRIES):
            try:
                started = time.monotonic()
                response = await self.http.post(path, json=body, headers=headers)
                self.latency[path.split("/")[-1]].append(time.monotonic() - started)
            except httpx.TransportError:
                self.retries += 1
                continue
            self.statuses[response.status_code] += 1
            assert response.status_code != 500, response.text
            if response.status_code == 503:
                assert response.headers.get("Retry-After")
                detail = response.json()["detail"]
                self.reasons[detail[detail.find("(") + 1 : detail.find(")")]] += 1
                self.retries += 1
                await asyncio.sleep(0.05)
                continue
            return response
        raise AssertionError(f"{path} still failing after {MAX_TRIES} tries")

    async def get(self, path: str, account: Account) -> httpx.Response:
        for _ in range(MAX_TRIES):
            response = await self.http.get(path, headers=account.headers)
            self.statuses[response.status_code] += 1
            assert response.status_code != 500, response.text
            if response.status_code != 503:
                return response
            self.retries += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path} still failing after {MAX_TRIES} tries")


async def killer(stop: asyncio.Event, interval: float, kills: list[int]) -> None:
    admin = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        while not stop.is_set():
            await asyncio.sleep(interval)
            if stop.is_set():
                break
            killed = await admin.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
            kills.append(int(killed or 0))
    finally:
        await admin.close()


async def under_kills(
    app: Any, region: str, riders_n: int, drivers_n: int, seconds: float, interval: float
) -> dict[str, Any]:
    rng = random.Random(5)
    riders = await bulk_accounts(app, "rider", riders_n)
    drivers = await bulk_accounts(app, "driver", drivers_n)
    positions = {d.id: (CENTER[0] + rng.uniform(-0.005, 0.005), CENTER[1]) for d in drivers}
    await place_many(app, region, positions)
    # An app of its own (engine, pool, Redis client) takes the kills; it is shut down inside the
    # test, so whatever the kills leave behind cannot hold up the session's shared app.
    own = create_app(app.state.settings)
    lifespan = own.router.lifespan_context(own)
    await lifespan.__aenter__()
    transport = httpx.ASGITransport(app=own)
    acked_rides: dict[str, tuple[str, str]] = {}  # key -> (rider, ride id) answered 201
    acked_cancels: set[str] = set()
    acked_accepts: dict[str, str] = {}  # ride -> driver
    acked_completes: set[str] = set()
    stop = asyncio.Event()
    kills: list[int] = []
    cycle_failures = Counter[str]()

    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as http:
        client = Client(http)

        async def rider_loop(rider: Account) -> None:
            while not stop.is_set():
                body = {
                    "pickup": {"lat": CENTER[0], "lng": CENTER[1]},
                    "dropoff": {"lat": CENTER[0] + 0.02, "lng": CENTER[1] + 0.02},
                }
                quote = await client.post("/v1/rider/quotes", rider, body)
                assert quote.status_code == 201, quote.text
                key = uuid.uuid4().hex
                ride = await client.post(
                    "/v1/rider/rides", rider, {"quote_id": quote.json()["id"]}, key
                )
                if ride.status_code == 409:  # still has an open ride (a driver has it)
                    await asyncio.sleep(0.2)
                    continue
                assert ride.status_code == 201, ride.text
                ride_id = ride.json()["id"]
                acked_rides[key] = (rider.id, ride_id)
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                cancel = await client.post(
                    f"/v1/rider/rides/{ride_id}/cancel", rider, None, uuid.uuid4().hex
                )
                if cancel.status_code == 200:
                    acked_cancels.add(ride_id)
                else:
                    assert cancel.status_code == 409, cancel.text  # in progress or completed
                    await asyncio.sleep(0.5)

        async def driver_loop(driver: Account) -> None:
            while not stop.is_set():
                offer = (await client.get("/v1/driver/offers/current", driver)).json()
                if offer is None:
                    await asyncio.sleep(0.1)
                    continue
                accepted = await client.post(
                    f"/v1/driver/offers/{offer['offer_id']}/accept", driver, None, uuid.uuid4().hex
                )
                if accepted.status_code != 200:
                    assert accepted.status_code == 409, accepted.text
                    continue
                ride_id = offer["ride_id"]
                acked_accepts[ride_id] = driver.id
                for action in ("arrive", "start", "complete"):
                    step = await client.post(
                        f"/v1/driver/rides/{ride_id}/{action}", driver, None, uuid.uuid4().hex
                    )
                    if step.status_code != 200:
                        assert step.status_code == 409, step.text  # the rider cancelled first
                        break
                else:
                    acked_completes.add(ride_id)

        async def dispatcher_loop() -> None:
            settings = app.state.settings.model_copy(update={"request_timeout_s": 3600})
            while not stop.is_set():
                try:
                    await place_many(app, region, positions)
                    await run_cycle(own.state, region, settings, own.state.eta)
                except Exception as exc:  # the real worker logs and retries next interval
                    cycle_failures[type(exc).__name__] += 1
                await asyncio.sleep(0.2)

        started = time.monotonic()
        tasks = [asyncio.create_task(rider_loop(r)) for r in riders]
        tasks += [asyncio.create_task(driver_loop(d)) for d in drivers]
        tasks.append(asyncio.create_task(dispatcher_loop()))
        tasks.append(asyncio.create_task(killer(stop, interval, kills)))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    await asyncio.wait_for(lifespan.__aexit__(None, None, None), 60)
    # The shared app's idle connections were killed too: start the next tests on fresh ones.
    await asyncio.wait_for(app.state.engine.dispose(), 60)

    # Nothing acknowledged was lost; every key had exactly one effect.
    async with transaction(app.state) as session:
        rows = (
            await session.execute(
                text(
                    "SELECT id::text, rider_id::text, status, driver_id::text FROM ride "
                    "WHERE region_id = :region"
                ),
                {"region": region},
            )
        ).all()
        keys = (
            (
                await session.execute(
                    text(
                        "SELECT key FROM idempotency_key WHERE path = '/v1/rider/rides' "
                        "AND user_id::text = ANY(:riders)"
                    ),
                    {"riders": [r.id for r in riders]},
                )
            )
            .scalars()
            .all()
        )
    rides = {row[0]: row for row in rows}
    for key, (rider_id, ride_id) in acked_rides.items():
        assert ride_id in rides and rides[ride_id][1] == rider_id, key
    assert set(acked_rides) <= set(keys)
    assert len(rides) == len(acked_rides), "a ride exists that no client was told about"
    for ride_id in acked_cancels:
        assert rides[ride_id][2] == "cancelled"
    for ride_id, driver_id in acked_accepts.items():
        assert rides[ride_id][3] == driver_id
    for ride_id in acked_completes:
        assert rides[ride_id][2] == "completed"

    return {
        "seconds": round(elapsed, 1),
        "kill_rounds": len(kills),
        "backends_killed": sum(kills),
        "responses": dict(sorted(client.statuses.items())),
        "http_500": client.statuses.get(500, 0),
        "client_retries": client.retries,
        "rides_acknowledged": len(acked_rides),
        "cancels_acknowledged": len(acked_cancels),
        "accepts_acknowledged": len(acked_accepts),
        "completed_acknowledged": len(acked_completes),
        "acknowledged_but_lost": 0,
        "dispatch_cycles_failed": dict(cycle_failures),
        "retry_reasons": dict(client.reasons),
        "max_latency_s": {k: round(max(v), 3) for k, v in client.latency.items() if len(k) < 12},
    }


async def test_postgres_connections_killed_under_load(app: Any, region: str) -> None:
    figures = await under_kills(app, region, riders_n=12, drivers_n=6, seconds=12, interval=1.0)
    assert figures["backends_killed"] > 0
    record_figures("postgres_kills", figures)


@pytest.mark.long
async def test_postgres_connections_killed_under_load_long(app: Any, region: str) -> None:
    figures = await under_kills(app, region, riders_n=24, drivers_n=12, seconds=60, interval=2.0)
    assert figures["backends_killed"] > 0
    record_figures("postgres_kills_long", figures)
