"""Clients can never set fare, status, driver, commission, role or membership fields.

Every write schema forbids extra fields (422); query parameters a route does not declare are
ignored. Each attempt is checked against what was stored, not only against the status code.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

from dispatch.core.clock import utcnow
from dispatch.core.database import transaction
from tests.conftest import PASSWORD, Account, bearer, make_account, make_operator

PICKUP = {"lat": 40.758, "lng": -73.9855}
DROPOFF = {"lat": 40.7069, "lng": -74.0113}


async def row(app: Any, query: str, **params: Any) -> Any:
    async with transaction(app.state) as session:
        return (await session.execute(text(query), params)).mappings().one_or_none()


async def count(app: Any, query: str, **params: Any) -> int:
    async with transaction(app.state) as session:
        return int((await session.execute(text(query), params)).scalar_one())


async def test_register_cannot_choose_operator_role_or_membership(
    client: httpx.AsyncClient, app: Any
) -> None:
    for extra in (
        {"role": "operator"},
        {"role": "admin"},
        {"is_operator": True},
        {"member": True},
        {"membership": {"status": "active"}},
        {"id": str(uuid.uuid4())},
        {"password_hash": "$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA"},
        {"is_online": True},
    ):
        email = f"mass-{uuid.uuid4().hex[:10]}@test.coop"
        body = {"email": email, "password": PASSWORD, "name": "Mallory", "role": "driver", **extra}
        response = await client.post("/v1/auth/register", json=body)
        assert response.status_code == 422, (extra, response.text)
        assert await count(app, "SELECT count(*) FROM user_account WHERE email = :e", e=email) == 0
    # The token endpoint's OAuth2 `scope` field grants nothing.
    rider = await make_account(client, "rider")
    token = await client.post(
        "/v1/auth/token",
        data={"username": rider.email, "password": PASSWORD, "scope": "operator admin"},
    )
    me = await client.get("/v1/auth/me", headers=bearer(token.json()["access_token"]))
    assert me.json()["role"] == "rider"
    assert (
        await client.get(
            "/v1/governance/members",
            headers=bearer(token.json()["access_token"]),
        )
    ).status_code == 403


async def test_riders_cannot_set_fares_status_or_driver(
    client: httpx.AsyncClient, app: Any, rider: Account, driver: Account
) -> None:
    priced = {
        "total_cents": 1,
        "driver_cents": 1,
        "coop_cents": 0,
        "policy_version": 0,
        "currency": "XXX",
    }
    response = await client.post(
        "/v1/rider/quotes",
        json={"pickup": PICKUP, "dropoff": DROPOFF, **priced},
        headers=rider.headers,
    )
    assert response.status_code == 422
    assert await count(app, "SELECT count(*) FROM quote WHERE rider_id = :r", r=rider.id) == 0

    quote = (
        await client.post(
            "/v1/rider/quotes", json={"pickup": PICKUP, "dropoff": DROPOFF}, headers=rider.headers
        )
    ).json()
    stored_quote = await row(
        app, "SELECT total_cents, coop_cents, driver_cents FROM quote WHERE id = :q", q=quote["id"]
    )
    for extra in (
        {"status": "completed"},
        {"driver_id": driver.id},
        {"total_cents": 1},
        {"coop_cents": 0},
        {"driver_cents": 99_999},
        {"rider_id": str(uuid.uuid4())},
        {"fare": {"total_cents": 1}},
    ):
        response = await client.post(
            "/v1/rider/rides", json={"quote_id": quote["id"], **extra}, headers=rider.headers
        )
        assert response.status_code == 422, (extra, response.text)
    assert await count(app, "SELECT count(*) FROM ride WHERE rider_id = :r", r=rider.id) == 0

    # Undeclared query parameters are ignored: the ride is the quote's, requested, driverless.
    ride = await client.post(
        "/v1/rider/rides",
        params={"status": "completed", "driver_id": driver.id, "total_cents": "1"},
        json={"quote_id": quote["id"]},
        headers=rider.headers,
    )
    assert ride.status_code == 201
    stored = await row(
        app,
        "SELECT status, driver_id, total_cents, coop_cents, driver_cents FROM ride WHERE id = :id",
        id=ride.json()["id"],
    )
    assert stored["status"] == "requested" and stored["driver_id"] is None
    assert (stored["total_cents"], stored["coop_cents"], stored["driver_cents"]) == (
        stored_quote["total_cents"],
        stored_quote["coop_cents"],
        stored_quote["driver_cents"],
    )

    cancel = await client.post(
        f"/v1/rider/rides/{ride.json()['id']}/cancel",
        json={"reason": "x", "status": "completed", "cancelled_by": "driver"},
        headers=rider.headers,
    )
    assert cancel.status_code == 422
    after = await row(
        app, "SELECT status, cancelled_by FROM ride WHERE id = :id", id=ride.json()["id"]
    )
    assert after["status"] == "requested" and after["cancelled_by"] is None
    await client.post(f"/v1/rider/rides/{ride.json()['id']}/cancel", headers=rider.headers)


async def test_drivers_cannot_set_their_ride_fare_or_membership(
    client: httpx.AsyncClient, app: Any, driver: Account
) -> None:
    response = await client.post(
        "/v1/driver/status",
        json={"status": "online", "member": True, "region": "elsewhere"},
        headers=driver.headers,
    )
    assert response.status_code == 422
    stored = await row(app, "SELECT is_online FROM driver WHERE user_id = :d", d=driver.id)
    assert stored["is_online"] is False
    assert await count(app, "SELECT count(*) FROM member WHERE user_id = :d", d=driver.id) == 0
    # Cancelling someone's ride with extra fields is refused before anything is looked up.
    response = await client.post(
        f"/v1/driver/rides/{uuid.uuid4()}/cancel",
        json={"reason": "x", "driver_cents": 10_000},
        headers=driver.headers,
    )
    assert response.status_code == 422


async def test_members_cannot_set_proposal_outcome_or_vote_weight(
    client: httpx.AsyncClient, app: Any
) -> None:
    operator = await make_operator(client, app)
    member = await make_account(client, "driver")
    admitted = await client.post(
        "/v1/governance/members", json={"user_id": member.id}, headers=operator.headers
    )
    assert admitted.status_code == 201
    closes_at = (
        utcnow() + timedelta(seconds=app.state.settings.governance_min_voting_s + 60)
    ).isoformat()
    body = {
        "title": "Fair cut",
        "rationale": "why not",
        "changes": {"base_cents": 250},
        "closes_at": closes_at,
    }
    for extra in (
        {"status": "passed"},
        {"yes_count": 1000},
        {"policy_version": 99},
        {"author_id": str(uuid.uuid4())},
        {"quorum": "0"},
        {"threshold": "0"},
        {"roll_size": 1},
        {"closed_at": closes_at},
    ):
        response = await client.post(
            "/v1/governance/proposals", json={**body, **extra}, headers=member.headers
        )
        assert response.status_code == 422, (extra, response.text)
    nested = {
        **body,
        "changes": {"base_cents": 250, "version": 99, "proposal_id": str(uuid.uuid4())},
    }
    assert (
        await client.post("/v1/governance/proposals", json=nested, headers=member.headers)
    ).status_code == 422
    assert await count(app, "SELECT count(*) FROM proposal WHERE author_id = :a", a=member.id) == 0

    proposal = await client.post("/v1/governance/proposals", json=body, headers=member.headers)
    assert proposal.status_code == 201
    stored = await row(
        app,
        "SELECT status, quorum, threshold, yes_count FROM proposal WHERE id = :p",
        p=proposal.json()["id"],
    )
    assert stored["status"] == "open" and stored["yes_count"] is None
    assert stored["quorum"] == app.state.settings.governance_quorum
    pid = proposal.json()["id"]
    for extra in (
        {"weight": 100},
        {"voter_token": "x" * 32},
        {"member_id": operator.id},
        {"count": 5},
    ):
        response = await client.post(
            f"/v1/governance/proposals/{pid}/votes",
            json={"choice": "yes", **extra},
            headers=member.headers,
        )
        assert response.status_code == 422, (extra, response.text)
    assert await count(app, "SELECT count(*) FROM ballot WHERE proposal_id = :p", p=pid) == 0
    assert (
        await client.post(
            f"/v1/governance/proposals/{pid}/votes", json={"choice": "yes"}, headers=member.headers
        )
    ).status_code == 200
    assert await count(app, "SELECT count(*) FROM ballot WHERE proposal_id = :p", p=pid) == 1

    # An operator admits a member; the request cannot pick the status or backdate it.
    newcomer = await make_account(client, "driver")
    for extra in ({"status": "suspended"}, {"admitted_at": "2000-01-01T00:00:00Z"}):
        response = await client.post(
            "/v1/governance/members",
            json={"user_id": newcomer.id, **extra},
            headers=operator.headers,
        )
        assert response.status_code == 422
    assert await count(app, "SELECT count(*) FROM member WHERE user_id = :u", u=newcomer.id) == 0
    # Riders and operators can never be admitted as members.
    rider = await make_account(client, "rider")
    for outsider in (rider.id, operator.id):
        response = await client.post(
            "/v1/governance/members", json={"user_id": outsider}, headers=operator.headers
        )
        assert response.status_code == 404
