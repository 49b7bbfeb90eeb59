"""Redis flushed, then killed and restarted, under a running API and dispatcher.

No ride state lives only in Redis: rides and events survive; drivers reappear in the geo index
from their next position update and, until they do, nobody is offered a ride (dispatch waits);
the API keeps serving ride actions while Redis is down; the event hub resubscribes after the
restart and sockets get what they missed from the event log, in order.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from dispatch.core.database import transaction
from dispatch.core.redis import create_redis
from dispatch.events.hub import RESYNC, EventHub
from tests.conftest import bearer
from tests.e2e.harness import Socket, online_socket, running_stack
from tests.fixtures.dispatching import ride_for
from tests.fixtures.regions import E2E_CENTER
from tests.reliability.conftest import bulk_accounts, record_figures
from tests.reliability.processes import (
    e2e_region,
    private_redis,
)

pytestmark = pytest.mark.e2e


async def offers_for(app: Any, ride_id: str) -> int:
    async with transaction(app.state) as session:
        found = await session.scalar(
            text("SELECT count(*) FROM offer WHERE ride_id = CAST(:id AS uuid)"), {"id": ride_id}
        )
        return int(found or 0)


async def ride_status(app: Any, ride_id: str) -> str:
    async with transaction(app.state) as session:
        return str(
            await session.scalar(
                text("SELECT status FROM ride WHERE id = CAST(:id AS uuid)"), {"id": ride_id}
            )
        )


async def test_redis_flushed_then_restarted(tmp_path: Path, app: Any) -> None:
    figures: dict[str, Any] = {}
    lat, lng = E2E_CENTER
    async with e2e_region(app) as region:
        with (
            private_redis(tmp_path) as redis_server,
            running_stack(
                tmp_path, redis_url=redis_server.url, region=region, batch_interval_s="0.3"
            ) as stack,
        ):
            api = stack.start_api("api").url
            assert api
            dispatcher = stack.start_dispatcher("dispatcher")
            rider, rider2 = await bulk_accounts(app, "rider", 2)
            (driver,) = await bulk_accounts(app, "driver", 1)
            driver_socket = await online_socket(api, driver.token, lat + 0.001, lng + 0.001)
            rider_socket = await Socket.open(api, "/v1/rider/ws", rider.token)
            await rider_socket.wait_for("hello")

            # 1. FLUSHALL: the driver is gone from the geo index; a request waits, unoffered.
            redis_server.flushall()
            async with httpx.AsyncClient(base_url=api, timeout=20) as http:
                ride_id = await ride_for(http, rider, lat, lng)
                await asyncio.sleep(2.0)  # several batches
                assert await offers_for(app, ride_id) == 0
                assert await ride_status(app, ride_id) == "requested"
                assert dispatcher.popen.poll() is None
                # ...until the driver's next position update puts it back.
                flushed_at = time.monotonic()
                await driver_socket.send({"type": "location", "lat": lat, "lng": lng, "id": 1})
                offer = await driver_socket.wait_for("offer", ride_id=ride_id)
                figures["offer_after_next_position_s"] = round(time.monotonic() - flushed_at, 2)
                await driver_socket.send({"type": "accept", "offer_id": offer["offer_id"]})
                await driver_socket.wait_for("accepted", offer_id=offer["offer_id"])
                await rider_socket.wait_for("ride.matched", ride_id=ride_id)

                # 2. Redis killed: ride actions still succeed (PostgreSQL holds the state).
                redis_server.kill()
                down_at = time.monotonic()
                arrive = await http.post(
                    f"/v1/driver/rides/{ride_id}/arrive", headers=bearer(driver.token)
                )
                assert arrive.status_code == 200, arrive.text
                ready = await http.get("/readyz")
                assert ready.status_code == 503
                # A request made while Redis is down is kept, not lost.
                waiting_ride = await ride_for(http, rider2, lat, lng)
                await asyncio.sleep(1.0)
                assert dispatcher.popen.poll() is None, "the dispatcher died with Redis"

                # 3. Redis back (empty): the hub resubscribes; the rider's socket gets the
                # `ride.arrived` it missed (replayed from the log), then live events again.
                redis_server.start()
                figures["redis_down_s"] = round(time.monotonic() - down_at, 2)
                back_at = time.monotonic()
                await rider_socket.wait_for("ride.arrived", ride_id=ride_id, timeout=20)
                figures["missed_event_replayed_after_s"] = round(time.monotonic() - back_at, 2)
                start = await http.post(
                    f"/v1/driver/rides/{ride_id}/start", headers=bearer(driver.token)
                )
                assert start.status_code == 200
                await rider_socket.wait_for("ride.started", ride_id=ride_id, timeout=10)
                complete = await http.post(
                    f"/v1/driver/rides/{ride_id}/complete", headers=bearer(driver.token)
                )
                assert complete.status_code == 200
                await rider_socket.wait_for("ride.completed", ride_id=ride_id, timeout=10)
                kinds = [m["type"] for m in rider_socket.received if m.get("ride_id") == ride_id]
                assert kinds.index("ride.matched") < kinds.index("ride.arrived")
                assert kinds.index("ride.arrived") < kinds.index("ride.started")
                seqs = [m["seq"] for m in rider_socket.received]
                assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

                # The request made during the outage is dispatched once the driver is seen again.
                await driver_socket.send({"type": "location", "lat": lat, "lng": lng, "id": 2})
                second = await driver_socket.wait_for("offer", ride_id=waiting_ride, timeout=20)
                assert second["ride_id"] == waiting_ride
                assert await ride_status(app, waiting_ride) == "requested"
                assert (await http.get("/readyz")).status_code == 200
            await driver_socket.close()
            await rider_socket.close()
    record_figures("redis_outage", figures)


async def test_event_hub_resubscribes_after_redis_restart(tmp_path: Path) -> None:
    """The hub survives a Redis restart: it resubscribes and tells sockets to replay."""
    with private_redis(tmp_path) as server:
        hub = EventHub(create_redis(server.url))
        await hub.start()
        channel = "coop:{hub-test}:user:1"
        try:
            async with hub.listen(channel, 16) as queue:
                publisher = create_redis(server.url)
                await publisher.publish(channel, json.dumps({"type": "before"}))
                assert (await asyncio.wait_for(queue.get(), 5))["type"] == "before"
                await publisher.aclose()

                server.kill()
                await asyncio.sleep(1.5)
                server.start()
                marker = await asyncio.wait_for(queue.get(), 20)
                assert marker["type"] == RESYNC and "since" in marker

                publisher = create_redis(server.url)
                assert await publisher.publish(channel, json.dumps({"type": "after"})) == 1
                assert (await asyncio.wait_for(queue.get(), 5))["type"] == "after"
                await publisher.aclose()
        finally:
            await hub.stop()
