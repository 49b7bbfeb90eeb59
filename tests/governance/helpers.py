from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from governance.tasks import close_due_proposals
from tests.conftest import Account
from tests.e2e.harness import TIMES_SQUARE, WALL_STREET
from tests.governance.conftest import closes_in

DAY = 86_400


async def open_proposal(
    client: httpx.AsyncClient,
    author: Account,
    changes: dict[str, Any],
    window_s: float = DAY,
    **extra: Any,
) -> dict[str, Any]:
    from dispatch.core.clock import utcnow

    body = {
        "title": "A change to vote on",
        "rationale": "Because the members asked.",
        "changes": changes,
        "closes_at": (utcnow() + timedelta(seconds=window_s)).isoformat(),
        **extra,
    }
    created = await client.post("/v1/governance/proposals", json=body, headers=author.headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def vote(
    client: httpx.AsyncClient, member: Account, proposal_id: str, choice: str
) -> httpx.Response:
    return await client.post(
        f"/v1/governance/proposals/{proposal_id}/votes",
        json={"choice": choice},
        headers=member.headers,
    )


async def close(
    app: Any, client: httpx.AsyncClient, viewer: Account, proposal_id: str
) -> dict[str, Any]:
    await close_due_proposals(app.state)
    found = await client.get(f"/v1/governance/proposals/{proposal_id}", headers=viewer.headers)
    return dict(found.json())


async def quote(client: httpx.AsyncClient, rider: Account) -> dict[str, Any]:
    made = await client.post(
        "/v1/rider/quotes",
        json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
        headers=rider.headers,
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


async def policy_version(client: httpx.AsyncClient, version: int) -> dict[str, Any]:
    history = (await client.get("/v1/governance/policies")).json()
    return next(p for p in history if p["version"] == version)


def proposal_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Raise the per-km rate",
        "rationale": "Fuel costs went up.",
        "changes": {"per_km_cents": 130},
        "closes_at": closes_in(2 * DAY),
    }
    body.update(overrides)
    return body
