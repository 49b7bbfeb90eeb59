"""Every REST route against every role: the owner gets through, everyone else is refused and
nothing changes (OWASP API1, broken object-level authorization, and API5, function level).

Routes are enumerated from the app itself, so a route added without an entry here fails.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Route, WebSocketRoute

from dispatch.core.clock import utcnow
from tests.fixtures.regions import retire_region
from tests.security.world import (
    RIDER_A_PHONE,
    World,
    build_world,
    state_fingerprint,
)

PRINCIPALS = (
    "rider_a",
    "rider_b",
    "driver_x",
    "driver_y",
    "member",
    "suspended",
    "operator",
    "anonymous",
)
EVERYONE = frozenset(PRINCIPALS)
SIGNED_IN = EVERYONE - {"anonymous"}
RIDERS = frozenset({"rider_a", "rider_b"})
DRIVERS = frozenset({"driver_x", "driver_y", "member", "suspended"})
GOVERNANCE_READERS = frozenset({"member", "suspended", "operator"})


@dataclass(frozen=True)
class Rule:
    """Who may call a route. `mutates` routes are only called by those who must be refused."""

    allowed: frozenset[str]
    mutates: bool = False
    body: str | None = None  # key into the bodies built per world


def walk_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every HTTP route and ("WS", path) of every WebSocket, through includes."""
    found: list[tuple[str, str]] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += walk_routes(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIWebSocketRoute | WebSocketRoute):
            found.append(("WS", prefix + route.path))
        elif isinstance(route, APIRoute | Route):
            for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((method, prefix + route.path))
    return found


MATRIX: dict[str, Rule] = {
    # Public documents and probes.
    "GET /openapi.json": Rule(EVERYONE),
    "GET /docs": Rule(EVERYONE),
    "GET /docs/oauth2-redirect": Rule(EVERYONE),
    "GET /redoc": Rule(EVERYONE),
    "GET /healthz": Rule(EVERYONE),
    "GET /readyz": Rule(EVERYONE),
    # Only the metrics token (COOP_METRICS_TOKEN), never a user token: tests/security/test_metrics_access.py.
    "GET /metrics": Rule(frozenset()),
    # Accounts.
    "POST /v1/auth/register": Rule(EVERYONE, mutates=True),
    "POST /v1/auth/token": Rule(EVERYONE, mutates=True),
    "GET /v1/auth/me": Rule(SIGNED_IN),
    # Rider.
    "POST /v1/rider/quotes": Rule(RIDERS, mutates=True, body="quote"),
    "POST /v1/rider/rides": Rule(frozenset({"rider_a"}), mutates=True, body="ride_request"),
    "GET /v1/rider/rides": Rule(RIDERS),
    "GET /v1/rider/rides/{ride_id}": Rule(frozenset({"rider_a"})),
    "POST /v1/rider/rides/{ride_id}/cancel": Rule(
        frozenset({"rider_a"}), mutates=True, body="cancel"
    ),
    # Driver.
    "POST /v1/driver/status": Rule(DRIVERS, mutates=True, body="status"),
    "GET /v1/driver/offers/current": Rule(DRIVERS),
    "POST /v1/driver/offers/{offer_id}/accept": Rule(frozenset({"driver_y"}), mutates=True),
    "POST /v1/driver/offers/{offer_id}/decline": Rule(frozenset({"driver_y"}), mutates=True),
    "GET /v1/driver/rides": Rule(DRIVERS),
    "GET /v1/driver/rides/current": Rule(DRIVERS),
    "GET /v1/driver/rides/{ride_id}": Rule(frozenset({"driver_x"})),
    "POST /v1/driver/rides/{ride_id}/arrive": Rule(frozenset({"driver_x"}), mutates=True),
    "POST /v1/driver/rides/{ride_id}/start": Rule(frozenset({"driver_x"}), mutates=True),
    "POST /v1/driver/rides/{ride_id}/complete": Rule(frozenset({"driver_x"}), mutates=True),
    "POST /v1/driver/rides/{ride_id}/cancel": Rule(
        frozenset({"driver_x"}), mutates=True, body="driver_cancel"
    ),
    "GET /v1/driver/earnings": Rule(DRIVERS),
    # Governance: the policy and bylaws are public; proposals are for members and operators.
    "GET /v1/governance/policy": Rule(EVERYONE),
    "GET /v1/governance/policies": Rule(EVERYONE),
    "GET /v1/governance/bylaws": Rule(EVERYONE),
    "POST /v1/governance/proposals": Rule(frozenset({"member"}), mutates=True, body="proposal"),
    "GET /v1/governance/proposals": Rule(GOVERNANCE_READERS),
    "GET /v1/governance/proposals/{proposal_id}": Rule(GOVERNANCE_READERS),
    "POST /v1/governance/proposals/{proposal_id}/votes": Rule(
        frozenset({"member"}), mutates=True, body="vote"
    ),
    "GET /v1/governance/proposals/{proposal_id}/impact": Rule(GOVERNANCE_READERS),
    "GET /v1/governance/audit": Rule(GOVERNANCE_READERS),
    "GET /v1/governance/members/me": Rule(frozenset({"member", "suspended"})),
    "GET /v1/governance/members": Rule(frozenset({"operator"})),
    "GET /v1/operator/rides/flagged": Rule(frozenset({"operator"})),
    "POST /v1/governance/members": Rule(frozenset({"operator"}), mutates=True, body="admit"),
    "POST /v1/governance/members/{user_id}/suspend": Rule(frozenset({"operator"}), mutates=True),
    "POST /v1/governance/members/{user_id}/reinstate": Rule(frozenset({"operator"}), mutates=True),
    # WebSockets have their own matrix (test_websocket_matrix.py); listed so a new one is noticed.
    "WS /v1/rider/ws": Rule(RIDERS),
    "WS /v1/driver/ws": Rule(DRIVERS),
}


@pytest.fixture(scope="module")
async def world(app: Any) -> AsyncIterator[World]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        built = await build_world(http, app)
        # An unused quote of rider A, so a stolen quote_id is a realistic attack.
        quote = await http.post(
            "/v1/rider/quotes",
            json={"pickup": {"lat": 30.5, "lng": 30.5}, "dropoff": {"lat": 30.6, "lng": 30.6}},
            headers=built.headers("rider_a"),
        )
        built.extra["quote_a"] = quote.json()["id"]
        yield built
    await retire_region(app.state, built.region)


def concrete_path(template: str, world: World, principal: str) -> str:
    values = {
        "ride_id": world.ride_a,
        "offer_id": world.offer_y,
        "proposal_id": world.proposal,
        "user_id": world.id("member") if template.endswith("/suspend") else world.id("suspended"),
    }
    return template.format(**values)


def bodies(world: World) -> dict[str, Any]:
    return {
        "quote": {"pickup": {"lat": 30.5, "lng": 30.5}, "dropoff": {"lat": 30.6, "lng": 30.6}},
        "ride_request": {"quote_id": world.extra["quote_a"]},
        "cancel": {"reason": "changed my mind"},
        "driver_cancel": {"reason": "flat tyre"},
        "status": {"status": "offline"},
        "proposal": {
            "title": "Sneaky proposal",
            "rationale": "nobody asked",
            "changes": {"base_cents": 1},
            "closes_at": (utcnow() + timedelta(days=2)).isoformat(),
        },
        "vote": {"choice": "yes"},
        "admit": {"user_id": world.id("driver_y")},
    }


def test_every_route_has_a_matrix_entry(app: Any) -> None:
    routes = {f"{method} {path}" for method, path in walk_routes(app.routes)}
    missing = sorted(routes - MATRIX.keys())
    stale = sorted(MATRIX.keys() - routes)
    assert not missing, f"routes without an authorization rule in MATRIX: {missing}"
    assert not stale, f"MATRIX rules for routes that no longer exist: {stale}"


async def call(http: httpx.AsyncClient, world: World, key: str, principal: str) -> httpx.Response:
    method, template = key.split(" ", 1)
    rule = MATRIX[key]
    kwargs: dict[str, Any] = {"headers": world.headers(principal)}
    if rule.body is not None:
        kwargs["json"] = bodies(world)[rule.body]
    return await http.request(method, concrete_path(template, world, principal), **kwargs)


async def test_refused_calls_are_refused_and_change_nothing(
    client: httpx.AsyncClient, app: Any, world: World
) -> None:
    before = await state_fingerprint(app, world.region)
    attempts = 0
    failures: list[str] = []
    for key, rule in MATRIX.items():
        if key.startswith("WS "):
            continue
        for principal in sorted(EVERYONE - rule.allowed):
            response = await call(client, world, key, principal)
            attempts += 1
            expected = {401} if principal == "anonymous" else {403, 404}
            if response.status_code not in expected:
                failures.append(
                    f"{principal} {key} -> {response.status_code} {response.text[:200]}"
                )
            elif not isinstance(response.json().get("error"), str):
                failures.append(f"{principal} {key} -> no error code in {response.text[:200]}")
    assert not failures, "\n".join(failures)
    assert attempts > 100
    print(f"authorization matrix: {len(MATRIX)} routes, {attempts} refused attempts")
    after = await state_fingerprint(app, world.region)
    changed = {table for table in before if before[table] != after[table]}
    assert not changed, f"refused calls changed {sorted(changed)}"


async def test_allowed_readers_get_through_and_see_only_their_own(
    client: httpx.AsyncClient, app: Any, world: World
) -> None:
    before = await state_fingerprint(app, world.region)
    for key, rule in MATRIX.items():
        if rule.mutates or key.startswith("WS "):
            continue
        for principal in sorted(rule.allowed):
            response = await call(client, world, key, principal)
            assert response.status_code == 200, f"{principal} {key}: {response.text[:300]}"
    after = await state_fingerprint(app, world.region)
    assert before == after, "reads changed state"

    async def get(path: str, principal: str) -> Any:
        response = await client.get(path, headers=world.headers(principal))
        assert response.status_code == 200, response.text
        return response.json()

    for principal in SIGNED_IN:
        assert (await get("/v1/auth/me", principal))["id"] == world.id(principal)
    assert [r["id"] for r in await get("/v1/rider/rides", "rider_a")] == [world.ride_a]
    assert [r["id"] for r in await get("/v1/rider/rides", "rider_b")] == [world.ride_b]
    assert [r["id"] for r in await get("/v1/driver/rides", "driver_x")] == [world.ride_a]
    for principal in DRIVERS - {"driver_x"}:
        assert await get("/v1/driver/rides", principal) == []
        assert await get("/v1/driver/rides/current", principal) is None
        assert (await get("/v1/driver/earnings", principal))["rides"] == []
    assert (await get("/v1/driver/offers/current", "driver_y"))["offer_id"] == world.offer_y
    for principal in DRIVERS - {"driver_y"}:
        assert await get("/v1/driver/offers/current", principal) is None
    members = {m["user_id"] for m in await get("/v1/governance/members", "operator")}
    assert {world.id("member"), world.id("suspended")} <= members
    assert (await get("/v1/governance/members/me", "suspended"))["status"] == "suspended"


async def test_rider_phone_reaches_only_the_assigned_driver(
    client: httpx.AsyncClient, world: World
) -> None:
    """A driver sees a rider's phone on their own active ride, and nowhere else."""
    seen: dict[str, list[str]] = {}
    for principal in PRINCIPALS:
        texts = []
        for path in (
            "/v1/driver/rides",
            "/v1/driver/rides/current",
            f"/v1/driver/rides/{world.ride_a}",
            "/v1/driver/offers/current",
            "/v1/driver/earnings",
            "/v1/governance/members",
            f"/v1/rider/rides/{world.ride_a}",
        ):
            response = await client.get(path, headers=world.headers(principal))
            if response.status_code == 200:
                texts.append(response.text)
        seen[principal] = [t for t in texts if RIDER_A_PHONE in t]
    assert seen["driver_x"], "the assigned driver should see the rider's phone during the ride"
    leaked = {p for p, found in seen.items() if found and p not in ("driver_x", "rider_a")}
    assert not leaked, f"rider A's phone leaked to {leaked}"


async def test_ballots_stay_secret(client: httpx.AsyncClient, world: World) -> None:
    """A member's choice is shown to that member only; while voting is open nobody sees a tally."""
    view = lambda p: client.get(  # noqa: E731
        f"/v1/governance/proposals/{world.proposal}", headers=world.headers(p)
    )
    mine = (await view("member")).json()
    assert mine["my_vote"] == "no" and mine["tally"] is None and mine["turnout"] >= 1
    for principal in ("suspended", "operator"):
        other = (await view(principal)).json()
        assert other["my_vote"] is None, f"{principal} saw the member's ballot"
        assert other["tally"] is None
    listed = await client.get("/v1/governance/proposals", headers=world.headers("operator"))
    assert all(p["my_vote"] is None for p in listed.json())


async def test_unknown_ids_and_foreign_ids_look_the_same(
    client: httpx.AsyncClient, world: World
) -> None:
    """Someone else's ride is indistinguishable from one that does not exist (no enumeration)."""
    foreign = await client.get(f"/v1/rider/rides/{world.ride_a}", headers=world.headers("rider_b"))
    missing = await client.get(f"/v1/rider/rides/{uuid.uuid4()}", headers=world.headers("rider_b"))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    foreign = await client.post(
        f"/v1/driver/offers/{world.offer_y}/accept", headers=world.headers("driver_x")
    )
    missing = await client.post(
        f"/v1/driver/offers/{uuid.uuid4()}/accept", headers=world.headers("driver_x")
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


async def test_audit_log_does_not_reveal_choices_while_voting_is_open(
    client: httpx.AsyncClient, world: World
) -> None:
    """The public log may not become a running tally: choices are sealed until the close."""
    for principal in GOVERNANCE_READERS:
        entries = (
            await client.get(
                "/v1/governance/audit", params={"limit": 1000}, headers=world.headers(principal)
            )
        ).json()
        ballots = [
            e for e in entries if e["type"] == "ballot.cast" and e["proposal_id"] == world.proposal
        ]
        assert ballots, "the member's ballot should be logged"
        for entry in ballots:
            assert entry["payload"].get("choice") is None, (
                f"{principal} read an open ballot: {entry}"
            )
            assert entry["sealed"] is True
