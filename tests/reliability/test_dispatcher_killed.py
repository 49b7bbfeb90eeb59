"""The dispatcher SIGKILLed at many points of its batches, and restarted each time.

Riders and drivers use the API in this process; the dispatcher is a real process that we kill
with SIGKILL after random delays (so kills land before, inside and between batches: in the
expiry, the snapshot, the solve, the offer insert) and start again. Drivers accept, decline or
ignore offers. Afterwards every request has ended (completed, unfulfilled or cancelled: none
stuck, none lost), no request ever had two pending offers at once, no driver two rides at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from dispatch.core.database import transaction
from tests.conftest import METRICS_HEADERS, Account
from tests.e2e.harness import free_port, running_stack
from tests.fixtures.dispatching import place_many
from tests.fixtures.regions import CENTER
from tests.reliability.conftest import bulk_accounts, record_figures

OPEN = "('requested', 'matched', 'arrived', 'in_progress')"


async def cycles_run(metrics_url: str, at_least: int) -> int:
    """Dispatch cycles this dispatcher process has run, from its Prometheus endpoint."""
    async with httpx.AsyncClient(timeout=1.0) as http:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                text_ = (await http.get(metrics_url, headers=METRICS_HEADERS)).text
                total = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text_.splitlines()
                    if line.startswith("coop_dispatch_cycles_total")
                )
                if total >= at_least:
                    return int(total)
            await asyncio.sleep(0.05)
    raise AssertionError(f"no dispatch cycle at {metrics_url}")


async def driver_agent(
    http: httpx.AsyncClient, driver: Account, rng: random.Random, stop: asyncio.Event
) -> Counter[str]:
    did: Counter[str] = Counter()
    answered: set[str] = set()
    while not stop.is_set():
        offer = (await http.get("/v1/driver/offers/current", headers=driver.headers)).json()
        if offer is None or offer["offer_id"] in answered:
            await asyncio.sleep(0.1)
            continue
        answered.add(offer["offer_id"])
        choice = rng.choices(["accept", "decline", "ignore"], [0.7, 0.15, 0.15])[0]
        did[choice] += 1
        if choice == "ignore":
            continue
        path = f"/v1/driver/offers/{offer['offer_id']}/{choice}"
        response = await http.post(path, headers=driver.headers)
        if choice == "decline" or response.status_code != 200:
            continue
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        for action in ("arrive", "start", "complete"):
            step = await http.post(
                f"/v1/driver/rides/{offer['ride_id']}/{action}", headers=driver.headers
            )
            assert step.status_code == 200, step.text
    return did


async def kill_dispatchers(
    tmp: Path, app: Any, region: str, requests: int, drivers_n: int, kills: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    timeout_s = 25.0
    riders = await bulk_accounts(app, "rider", requests)
    drivers = await bulk_accounts(app, "driver", drivers_n)
    positions = {
        d.id: (CENTER[0] + rng.uniform(-0.01, 0.01), CENTER[1] + rng.uniform(-0.01, 0.01))
        for d in drivers
    }
    await place_many(app, region, positions)
    stop = asyncio.Event()
    kill_delays: list[float] = []
    transport = httpx.ASGITransport(app=app)
    started = time.monotonic()
    with running_stack(
        tmp, batch_interval_s="0.3", offer_ttl_s="3", request_timeout_s=str(timeout_s)
    ) as stack:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def keep_positions() -> None:
                while not stop.is_set():
                    await place_many(app, region, positions)
                    await asyncio.sleep(2)

            async def ask(rider: Account) -> str:
                await asyncio.sleep(rng.uniform(0, kills * 4.0))  # requests arrive during kills
                body = {
                    "pickup": {"lat": CENTER[0], "lng": CENTER[1]},
                    "dropoff": {"lat": CENTER[0] + 0.02, "lng": CENTER[1] + 0.02},
                }
                quote = await http.post("/v1/rider/quotes", json=body, headers=rider.headers)
                ride = await http.post(
                    "/v1/rider/rides", json={"quote_id": quote.json()["id"]}, headers=rider.headers
                )
                assert ride.status_code == 201, ride.text
                return str(ride.json()["id"])

            agents = [asyncio.create_task(driver_agent(http, d, rng, stop)) for d in drivers]
            positions_task = asyncio.create_task(keep_positions())
            asking = asyncio.gather(*(ask(r) for r in riders))
            cycles_at_kill: list[int] = []

            def start(name: str) -> tuple[Any, str]:
                port = free_port()
                stack.env["COOP_DISPATCHER_METRICS_PORT"] = str(port)
                return stack.start_dispatcher(name), f"http://127.0.0.1:{port}/metrics"

            dispatcher, metrics = start("dispatcher-0")
            for i in range(kills):
                # Wait until this incarnation runs batches (start-up takes seconds under load),
                # then kill it at a random moment of the next few 0.3 s batches.
                await cycles_run(metrics, at_least=1)
                delay = rng.uniform(0.0, 1.2)
                kill_delays.append(round(delay, 2))
                await asyncio.sleep(delay)
                cycles_at_kill.append(await cycles_run(metrics, at_least=0))
                dispatcher.popen.kill()
                dispatcher.popen.wait()
                dispatcher, metrics = start(f"dispatcher-{i + 1}")
            ride_ids = await asking

            async def open_rides() -> int:
                async with transaction(app.state) as session:
                    found = await session.scalar(
                        text(
                            f"SELECT count(*) FROM ride WHERE region_id = :r AND status IN {OPEN}"
                        ),
                        {"r": region},
                    )
                    return int(found or 0)

            for _ in range(int(timeout_s + 30) * 2):  # every request must end by itself
                if not await open_rides():
                    break
                await asyncio.sleep(0.5)
            stop.set()
            did = sum((await asyncio.gather(*agents)), Counter[str]())
            await positions_task

    async with transaction(app.state) as session:
        statuses = Counter(
            dict(
                (
                    await session.execute(
                        text("SELECT status, count(*) FROM ride WHERE region_id = :r GROUP BY 1"),
                        {"r": region},
                    )
                ).all()
            )
        )
        two_pending = await session.scalar(
            text(
                "SELECT count(*) FROM offer a JOIN offer b ON a.ride_id = b.ride_id AND a.id < b.id "
                "JOIN ride r ON r.id = a.ride_id WHERE r.region_id = :r "
                "AND tstzrange(a.created_at, coalesce(a.responded_at, 'infinity')) "
                "&& tstzrange(b.created_at, coalesce(b.responded_at, 'infinity'))"
            ),
            {"r": region},
        )
        two_rides = await session.scalar(
            text(
                "SELECT count(*) FROM ride a JOIN ride b ON a.driver_id = b.driver_id "
                "AND a.id < b.id WHERE a.region_id = :r AND b.region_id = :r "
                "AND tstzrange(a.matched_at, a.ended_at) && tstzrange(b.matched_at, b.ended_at)"
            ),
            {"r": region},
        )
        offers = Counter(
            dict(
                (
                    await session.execute(
                        text(
                            "SELECT o.status, count(*) FROM offer o JOIN ride r ON r.id = o.ride_id "
                            "WHERE r.region_id = :r GROUP BY 1"
                        ),
                        {"r": region},
                    )
                ).all()
            )
        )
    assert sum(statuses.values()) == len(ride_ids) == requests
    assert set(statuses) <= {"completed", "unfulfilled", "cancelled"}, statuses
    assert two_pending == 0
    assert two_rides == 0
    assert offers.get("pending", 0) == 0
    return {
        "requests": requests,
        "drivers": drivers_n,
        "sigkills": kills,
        "kill_delays_after_first_batch_s": kill_delays,
        "batches_before_each_kill": cycles_at_kill,
        "rides": dict(statuses),
        "offers": dict(offers),
        "driver_choices": dict(did),
        "stuck": 0,
        "requests_with_two_pending_offers": two_pending,
        "drivers_with_two_rides": two_rides,
        "seconds": round(time.monotonic() - started, 1),
    }


async def test_dispatcher_killed_mid_batch(tmp_path: Path, app: Any, region: str) -> None:
    figures = await kill_dispatchers(tmp_path, app, region, 40, 8, kills=6, seed=3)
    record_figures("dispatcher_killed", figures)


@pytest.mark.long
async def test_dispatcher_killed_mid_batch_long(tmp_path: Path, app: Any, region: str) -> None:
    figures = await kill_dispatchers(tmp_path, app, region, 200, 30, kills=40, seed=4)
    record_figures("dispatcher_killed_long", figures)
