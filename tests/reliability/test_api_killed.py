"""An API process SIGKILLed with riders' sockets open.

Riders follow their rides on API A; drivers work through API B. A is killed mid-ride; the drivers
arrive, start and complete; the riders reconnect to B with `?after=<last event_id they saw>` and
must receive every ride event they missed, in order, exactly as the durable event log has them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from dispatch.core.database import transaction
from tests.conftest import Account, bearer
from tests.e2e.harness import Socket, online_socket, running_stack
from tests.fixtures.dispatching import ride_for
from tests.fixtures.regions import E2E_CENTER
from tests.reliability.conftest import bulk_accounts, record_figures
from tests.reliability.processes import e2e_region

pytestmark = pytest.mark.e2e


async def accept_every_offer(socket: Socket, stop: asyncio.Event) -> None:
    answered: set[str] = set()
    while not stop.is_set():
        for offer in socket.of_type("offer"):
            if offer["offer_id"] not in answered:
                answered.add(offer["offer_id"])
                await socket.send({"type": "accept", "offer_id": offer["offer_id"]})
        await asyncio.sleep(0.05)


async def logged_events(app: Any, user_id: str, after: int) -> list[tuple[int, str]]:
    async with transaction(app.state) as session:
        rows = await session.execute(
            text(
                "SELECT id, type FROM event WHERE user_id = CAST(:user AS uuid) AND id > :after "
                "ORDER BY id"
            ),
            {"user": user_id, "after": after},
        )
        return [(int(row[0]), str(row[1])) for row in rows]


async def kill_api_mid_ride(tmp: Path, app: Any, pairs: int) -> dict[str, Any]:
    lat, lng = E2E_CENTER
    async with e2e_region(app) as region:
        with running_stack(tmp, region=region, batch_interval_s="0.3", offer_ttl_s="10") as stack:
            api_a = stack.start_api("api-a")
            api_b = stack.start_api("api-b")
            assert api_a.url and api_b.url
            stack.start_dispatcher("dispatcher")
            riders = await bulk_accounts(app, "rider", pairs)
            drivers = await bulk_accounts(app, "driver", pairs)
            driver_sockets = [
                await online_socket(api_b.url, d.token, lat + 0.001 * i, lng)
                for i, d in enumerate(drivers)
            ]
            stop = asyncio.Event()
            agents = [asyncio.create_task(accept_every_offer(s, stop)) for s in driver_sockets]
            rider_sockets = []
            for rider in riders:
                socket = await Socket.open(api_a.url, "/v1/rider/ws", rider.token)
                await socket.wait_for("hello")
                rider_sockets.append(socket)

            async with httpx.AsyncClient(base_url=api_a.url, timeout=30) as http:
                rides = await asyncio.gather(*(ride_for(http, r, lat, lng) for r in riders))
            for socket, ride_id in zip(rider_sockets, rides, strict=True):
                await socket.wait_for("ride.matched", ride_id=ride_id, timeout=60)
            stop.set()
            await asyncio.gather(*agents)
            driver_of: dict[str, Account] = {}
            for driver, socket in zip(drivers, driver_sockets, strict=True):
                for accepted in socket.of_type("accepted"):
                    driver_of[accepted["ride"]["id"]] = driver
            assert set(driver_of) == set(rides)

            last_seen = {
                rider.id: max(m["event_id"] for m in socket.received if "event_id" in m)
                for rider, socket in zip(riders, rider_sockets, strict=True)
            }
            api_a.popen.kill()  # SIGKILL: no goodbye to anyone
            api_a.popen.wait()
            killed_at = time.monotonic()

            async with httpx.AsyncClient(base_url=api_b.url, timeout=30) as http:
                for ride_id in rides:
                    for action in ("arrive", "start", "complete"):
                        step = await http.post(
                            f"/v1/driver/rides/{ride_id}/{action}",
                            headers=bearer(driver_of[ride_id].token),
                        )
                        assert step.status_code == 200, step.text

            missed_total = 0
            for rider, ride_id, old in zip(riders, rides, rider_sockets, strict=True):
                await old.close()
                assert old.close_code is not None  # the old socket is dead
                after = last_seen[rider.id]
                socket = await Socket.open(
                    api_b.url, "/v1/rider/ws", rider.token, query=f"after={after}"
                )
                await socket.wait_for("ride.completed", ride_id=ride_id, timeout=30)
                expected = await logged_events(app, rider.id, after)
                got = [(m["event_id"], m["type"]) for m in socket.received if "event_id" in m]
                assert got == expected, (got, expected)
                assert [t for _, t in got] == ["ride.arrived", "ride.started", "ride.completed"]
                seqs = [m["seq"] for m in socket.received]
                assert seqs == list(range(1, len(seqs) + 1))
                missed_total += len(got)
                await socket.close()
            resumed_s = time.monotonic() - killed_at
            for socket in driver_sockets:
                await socket.close()
    return {
        "riders": pairs,
        "events_missed_while_disconnected": missed_total,
        "events_replayed_in_order": missed_total,
        "events_lost": 0,
        "kill_to_all_resumed_s": round(resumed_s, 1),
    }


async def test_api_killed_with_sockets_open(tmp_path: Path, app: Any) -> None:
    record_figures("api_killed", await kill_api_mid_ride(tmp_path, app, pairs=4))


@pytest.mark.long
async def test_api_killed_with_sockets_open_long(tmp_path: Path, app: Any) -> None:
    record_figures("api_killed_long", await kill_api_mid_ride(tmp_path, app, pairs=30))
