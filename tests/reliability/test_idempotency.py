"""Idempotency-Key: five concurrent retries give one effect and five identical answers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from dispatch.core.database import transaction
from dispatch.events.models import Event
from dispatch.rides.models import Ride
from tests.conftest import Account, make_account
from tests.fixtures.dispatching import (
    cycle,
    offer_for,
    offered_ride,
    online_driver,
    quote_for,
    request_ride,
)

RETRIES = 5


async def retried(
    client: httpx.AsyncClient, path: str, account: Account, body: Any = None, key: str | None = None
) -> list[httpx.Response]:
    headers = account.headers | {"Idempotency-Key": key or uuid.uuid4().hex}
    return await asyncio.gather(
        *(client.post(path, json=body, headers=headers) for _ in range(RETRIES))
    )


def assert_identical(responses: list[httpx.Response], status: int) -> None:
    assert {r.status_code for r in responses} == {status}, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == RETRIES - 1


async def count_events(app: Any, user_id: str, kind: str) -> int:
    async with transaction(app.state) as session:
        query = select(func.count()).where(Event.user_id == uuid.UUID(user_id), Event.type == kind)
        return int(await session.scalar(query) or 0)


async def test_ride_request_retried_five_times_at_once(client: httpx.AsyncClient, app: Any) -> None:
    rider = await make_account(client, "rider")
    quote_id = await quote_for(client, rider, 40.758, -73.9855)
    responses = await retried(client, "/v1/rider/rides", rider, {"quote_id": quote_id})
    assert_identical(responses, 201)
    async with transaction(app.state) as session:
        rides = await session.scalar(
            select(func.count()).where(Ride.rider_id == uuid.UUID(rider.id))
        )
    assert rides == 1
    assert await count_events(app, rider.id, "ride.searching") == 1


async def test_whole_ride_with_every_step_retried(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    driver = await online_driver(client, app, region, 10.501, 10.501)
    rider, ride_id = await request_ride(client)
    assert (await cycle(app, region)).offers_sent == 1
    offer = await offer_for(client, driver)

    accepted = await retried(client, f"/v1/driver/offers/{offer['offer_id']}/accept", driver)
    assert_identical(accepted, 200)
    assert accepted[0].json()["status"] == "matched"
    assert await count_events(app, rider.id, "ride.matched") == 1

    for action, event in (
        ("arrive", "ride.arrived"),
        ("start", "ride.started"),
        ("complete", "ride.completed"),
    ):
        responses = await retried(client, f"/v1/driver/rides/{ride_id}/{action}", driver)
        assert_identical(responses, 200)
        assert await count_events(app, rider.id, event) == 1


async def test_rider_cancel_and_driver_cancel_retried(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    driver = await online_driver(client, app, region, 10.501, 10.501)
    rider, ride_id, offer = await offered_ride(client, app, region, driver)
    assert (
        await client.post(f"/v1/driver/offers/{offer['offer_id']}/accept", headers=driver.headers)
    ).status_code == 200

    backed_out = await retried(
        client, f"/v1/driver/rides/{ride_id}/cancel", driver, {"reason": "flat tyre"}
    )
    assert_identical(backed_out, 200)
    assert await count_events(app, rider.id, "ride.driver_cancelled") == 1

    cancelled = await retried(
        client, f"/v1/rider/rides/{ride_id}/cancel", rider, {"reason": "too late"}
    )
    assert_identical(cancelled, 200)
    assert cancelled[0].json()["status"] == "cancelled"
    assert await count_events(app, rider.id, "ride.cancelled") == 1


async def test_decline_retried(client: httpx.AsyncClient, app: Any, region: str) -> None:
    driver = await online_driver(client, app, region, 10.501, 10.501)
    await request_ride(client)
    await cycle(app, region)
    offer = await offer_for(client, driver)
    declined = await retried(client, f"/v1/driver/offers/{offer['offer_id']}/decline", driver)
    assert_identical(declined, 200)
    assert declined[0].json()["status"] == "declined"


async def test_same_key_with_another_request_is_refused(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    rider, ride_id = await request_ride(client)
    key = {"Idempotency-Key": "cancel-once"}
    path = f"/v1/rider/rides/{ride_id}/cancel"
    first = await client.post(path, json={"reason": "a"}, headers=rider.headers | key)
    assert first.status_code == 200
    other_body = await client.post(path, json={"reason": "b"}, headers=rider.headers | key)
    assert other_body.status_code == 422
    assert other_body.json()["error"] == "idempotency_key_reused"
    # ...with a body the OpenAPI document declares (schemathesis found it undeclared).
    spec = (await client.get("/openapi.json")).json()
    declared = spec["paths"]["/v1/rider/rides/{ride_id}/cancel"]["post"]["responses"]["422"]
    options = declared["content"]["application/json"]["schema"]["anyOf"]
    assert {"$ref": "#/components/schemas/Error"} in options
    assert set(spec["components"]["schemas"]["Error"]["required"]) <= set(other_body.json())
    other_path = await client.post(
        "/v1/rider/rides", json={"quote_id": str(uuid.uuid4())}, headers=rider.headers | key
    )
    assert other_path.status_code == 422
    # Key order and whitespace do not make a different request.
    same = await client.post(
        path,
        content=b'{ "reason" : "a" }',
        headers=rider.headers | key | {"Content-Type": "application/json"},
    )
    assert same.status_code == 200 and same.content == first.content


async def test_keys_belong_to_one_user(client: httpx.AsyncClient, app: Any) -> None:
    first, ride_a = await request_ride(client, 40.758, -73.9855)
    second, ride_b = await request_ride(client, 40.758, -73.9855)
    key = {"Idempotency-Key": "shared-key"}
    a = await client.post(f"/v1/rider/rides/{ride_a}/cancel", headers=first.headers | key)
    b = await client.post(f"/v1/rider/rides/{ride_b}/cancel", headers=second.headers | key)
    assert a.status_code == b.status_code == 200
    assert a.json()["id"] == ride_a and b.json()["id"] == ride_b


async def test_errors_are_not_saved_and_a_retry_runs_again(
    client: httpx.AsyncClient, app: Any, region: str
) -> None:
    _, ride_id = await request_ride(client)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    driver = await make_account(client, "driver")
    # Not the driver's ride: 404, nothing saved, the key stays free.
    miss = await client.post(f"/v1/driver/rides/{ride_id}/arrive", headers=driver.headers | key)
    assert miss.status_code == 404
    again = await client.post(f"/v1/driver/rides/{ride_id}/arrive", headers=driver.headers | key)
    assert again.status_code == 404 and "Idempotent-Replayed" not in again.headers


async def test_vote_retried(client: httpx.AsyncClient, app: Any, make_members: Any) -> None:
    from governance.models import Ballot
    from tests.governance.helpers import open_proposal

    (member,) = await make_members(1)
    proposal = await open_proposal(client, member, {"per_minute_cents": 41})
    path = f"/v1/governance/proposals/{proposal['id']}/votes"
    voted = await retried(client, path, member, {"choice": "yes"})
    assert_identical(voted, 200)
    async with transaction(app.state) as session:
        ballots = await session.scalar(
            select(func.count()).where(Ballot.proposal_id == uuid.UUID(proposal["id"]))
        )
    assert ballots == 1
    other = await client.post(
        path,
        json={"choice": "no"},
        headers=member.headers | {"Idempotency-Key": voted[0].request.headers["Idempotency-Key"]},
    )
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"


async def test_old_keys_are_purged(client: httpx.AsyncClient, app: Any) -> None:
    from datetime import timedelta

    from dispatch.core import clock
    from dispatch.idempotency.models import IdempotencyKey
    from dispatch.idempotency.tasks import purge_expired_keys

    rider, ride_id = await request_ride(client, 40.758, -73.9855)
    key = uuid.uuid4().hex
    cancel = await client.post(
        f"/v1/rider/rides/{ride_id}/cancel", headers=rider.headers | {"Idempotency-Key": key}
    )
    assert cancel.status_code == 200
    clock.advance(timedelta(days=2))
    try:
        assert await purge_expired_keys(app.state, 86_400) >= 1
    finally:
        clock.reset()
    async with transaction(app.state) as session:
        assert await session.get(IdempotencyKey, (uuid.UUID(rider.id), key)) is None


async def test_ride_requests_have_one_idempotency_path(client: httpx.AsyncClient, app: Any) -> None:
    """Issue 11.5: the generic key table alone; no second key column on `ride`."""
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute
    from sqlalchemy import text

    from rider_api.endpoints import router as rider_router

    (route,) = [
        r
        for r in rider_router.routes
        if isinstance(r, APIRoute) and r.path.endswith("/rides") and "POST" in r.methods
    ]

    def headers(dependant: Dependant) -> list[str]:
        own = [p.alias for p in dependant.header_params]
        return own + [h for sub in dependant.dependencies for h in headers(sub)]

    assert headers(route.dependant) == ["Idempotency-Key"]
    async with transaction(app.state) as session:
        columns = await session.scalars(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = 'ride'")
        )
        assert "idempotency_key" not in set(columns)
    # The same key with another quote is still refused, now by the generic path.
    rider = await make_account(client, "rider")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await quote_for(client, rider, 40.758, -73.9855)
    created = await client.post(
        "/v1/rider/rides", json={"quote_id": first}, headers=rider.headers | key
    )
    assert created.status_code == 201
    other = await quote_for(client, rider, 40.758, -73.9855)
    reused = await client.post(
        "/v1/rider/rides", json={"quote_id": other}, headers=rider.headers | key
    )
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"
