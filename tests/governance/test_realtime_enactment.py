"""In real time, through the API and the dispatcher loop: members vote a commission cut, it passes
when its window closes with no one pressing a button, and the next ride's receipt has the new
split and names the proposal. (The process-level twin lives in tests/e2e.)"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from dispatch.core.settings import Settings
from dispatch.dispatcher.worker import dispatch_forever
from dispatch.entrypoints import periodic_jobs
from dispatch.fares.pricing import price
from tests.conftest import Account
from tests.e2e.harness import TIMES_SQUARE
from tests.fixtures.fares import rules_of
from tests.governance.conftest import MakeMembers
from tests.governance.helpers import open_proposal, policy_version, quote, vote


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_members_vote_a_commission_cut_and_the_next_receipt_shows_it(
    app: Any,
    client: httpx.AsyncClient,
    settings: Settings,
    make_members: MakeMembers,
    rider: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "governance_min_voting_s", 1)
    members = await make_members(3)
    driving = members[0]
    dispatcher = asyncio.create_task(
        dispatch_forever(app.state, settings, app.state.eta, periodic_jobs(settings))
    )
    try:
        in_force = (await client.get("/v1/governance/policy")).json()
        cut = (Decimal(str(in_force["commission_rate"])) - Decimal("0.01")).max(Decimal(0))
        proposal = await open_proposal(client, driving, {"commission_rate": str(cut)}, window_s=3)
        pid = proposal["id"]
        for member in members:
            assert (await vote(client, member, pid, "yes")).status_code == 200

        async def passed() -> dict[str, Any] | None:
            seen = await client.get(f"/v1/governance/proposals/{pid}", headers=driving.headers)
            body = seen.json()
            return body if body["status"] != "open" else None

        closed = await eventually(passed, timeout=20)
        assert closed["status"] == "passed"
        version = closed["policy_version"]
        enacted = await policy_version(client, version)
        assert Decimal(str(enacted["commission_rate"])) == cut

        fresh = await quote(client, rider)
        assert fresh["policy_version"] == version
        online = await client.post(
            "/v1/driver/status", json={"status": "online"}, headers=driving.headers
        )
        assert online.status_code == 200, online.text
        app.state.location_index.update(
            uuid.UUID(driving.id), TIMES_SQUARE["lat"], TIMES_SQUARE["lng"]
        )
        await app.state.location_index.flush()
        ride = await client.post(
            "/v1/rider/rides", json={"quote_id": fresh["id"]}, headers=rider.headers
        )
        assert ride.status_code == 201, ride.text
        ride_id = ride.json()["id"]

        async def offered() -> dict[str, Any] | None:
            current = await client.get("/v1/driver/offers/current", headers=driving.headers)
            body = current.json()
            return body if body and body.get("ride_id") == ride_id else None

        offer = await eventually(offered)
        base = f"/v1/driver/offers/{offer['offer_id']}"
        assert (await client.post(f"{base}/accept", headers=driving.headers)).status_code == 200
        for action in ("arrive", "start", "complete"):
            step = await client.post(
                f"/v1/driver/rides/{ride_id}/{action}", headers=driving.headers
            )
            assert step.status_code == 200, step.text

        receipt = (await client.get(f"/v1/rider/rides/{ride_id}", headers=rider.headers)).json()[
            "receipt"
        ]
        expected = price(rules_of(enacted), fresh["distance_m"], fresh["duration_s"])
        assert receipt["policy_version"] == version
        assert receipt["proposal_id"] == pid
        assert (receipt["driver_cents"], receipt["coop_cents"]) == (
            expected.driver_cents,
            expected.coop_cents,
        )
    finally:
        dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher
        await client.post("/v1/driver/status", json={"status": "offline"}, headers=driving.headers)
