"""A completion that looks wrong is flagged for operators, never refused (GPS fails in tunnels)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from dispatch.core import clock
from dispatch.core.redis import RegionKeys
from dispatch.dispatcher.presence import LocationIndex
from tests.conftest import Account
from tests.fixtures.dispatching import cycle, offer_for, online_driver, place
from tests.fixtures.dispatching import request_ride as open_request
from tests.fixtures.regions import CENTER


async def drive_to_pickup(
    client: httpx.AsyncClient, app: Any, region: str, driver: Account
) -> tuple[str, dict[str, Any]]:
    _, ride_id = await open_request(client)
    await cycle(app, region)
    offer = await offer_for(client, driver, ride_id)
    accepted = await client.post(
        f"/v1/driver/offers/{offer['offer_id']}/accept", headers=driver.headers
    )
    assert accepted.status_code == 200, accepted.text
    for action in ("arrive", "start"):
        step = await client.post(f"/v1/driver/rides/{ride_id}/{action}", headers=driver.headers)
        assert step.status_code == 200, step.text
    return ride_id, accepted.json()


async def complete(client: httpx.AsyncClient, driver: Account, ride_id: str) -> None:
    done = await client.post(f"/v1/driver/rides/{ride_id}/complete", headers=driver.headers)
    assert done.status_code == 200, done.text  # flagged or not, the driver is paid


async def flags_of(client: httpx.AsyncClient, operator: Account, ride_id: str) -> list[Any]:
    listed = await client.get("/v1/operator/rides/flagged?limit=100", headers=operator.headers)
    assert listed.status_code == 200, listed.text
    for ride in listed.json():
        if ride["id"] == ride_id:
            return list(ride["completion_flags"])
    return []


async def test_completions_far_from_the_dropoff_or_too_soon_are_flagged(
    client: httpx.AsyncClient, app: Any, region: str, operator: Account
) -> None:
    lat, lng = CENTER
    driver = await online_driver(client, app, region, lat, lng)

    # At once, from the pickup: 4.7 km from the dropoff, a 6 km trip in no time.
    ride_id, view = await drive_to_pickup(client, app, region, driver)
    await complete(client, driver, ride_id)
    flags = {flag["flag"]: flag for flag in await flags_of(client, operator, ride_id)}
    assert set(flags) == {"far_from_dropoff", "too_soon"}
    assert 4_000 < flags["far_from_dropoff"]["distance_m"] < 5_000
    assert flags["too_soon"]["took_s"] < 5 < flags["too_soon"]["fastest_s"]

    # No position at all (silent, pruned): flagged as unknown, still completed.
    ride_id, _ = await drive_to_pickup(client, app, region, driver)
    await LocationIndex(app.state.redis, RegionKeys(region), 0).remove(uuid.UUID(driver.id))
    await complete(client, driver, ride_id)
    flags = {flag["flag"]: flag for flag in await flags_of(client, operator, ride_id)}
    assert set(flags) == {"position_unknown", "too_soon"}

    # An honest trip: ten minutes, ending at the dropoff. (Last: tokens issued after the clock
    # moved would not be valid yet.)
    await place(app, region, driver.id, lat, lng)
    ride_id, view = await drive_to_pickup(client, app, region, driver)
    dropoff = view["dropoff"]
    clock.advance(timedelta(minutes=10))
    await place(app, region, driver.id, dropoff["lat"] + 0.001, dropoff["lng"])
    await complete(client, driver, ride_id)
    assert await flags_of(client, operator, ride_id) == []


async def test_only_operators_read_the_flags(
    client: httpx.AsyncClient, driver: Account, rider: Account
) -> None:
    for account in (driver, rider):
        response = await client.get("/v1/operator/rides/flagged", headers=account.headers)
        assert response.status_code == 403, response.text
    assert (await client.get("/v1/operator/rides/flagged")).status_code == 401
