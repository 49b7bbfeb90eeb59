from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from dispatch.core.database import transaction
from dispatch.events.models import Event
from tests.conftest import Account
from tests.governance.conftest import MakeMembers, closes_in
from tests.governance.helpers import DAY, proposal_body


async def test_member_drafts_and_members_are_notified(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    author, other = await make_members(2)
    created = await client.post(
        "/v1/governance/proposals", json=proposal_body(), headers=author.headers
    )
    assert created.status_code == 201, created.text
    proposal = created.json()
    assert proposal["status"] == "open"
    assert proposal["roll_size"] == 2 and proposal["turnout"] == 0 and proposal["tally"] is None
    assert proposal["threshold"] == "1/2" and proposal["quorum"] == "1/2"
    assert proposal["changes"] == {"per_km_cents": 130}

    listed = await client.get("/v1/governance/proposals?status=open", headers=other.headers)
    assert proposal["id"] in {p["id"] for p in listed.json()}

    async with transaction(app.state) as session:
        notified = (
            await session.execute(
                select(Event.user_id, Event.payload).where(Event.type == "proposal.opened")
            )
        ).all()
    recipients = {
        str(user_id) for user_id, payload in notified if payload["proposal_id"] == proposal["id"]
    }
    assert recipients == {author.id, other.id}


async def test_commission_changes_need_two_thirds(
    client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    (author,) = await make_members(1)
    body = proposal_body(changes={"commission_rate": 0.08})
    created = await client.post("/v1/governance/proposals", json=body, headers=author.headers)
    assert created.status_code == 201, created.text
    assert created.json()["threshold"] == "2/3"
    assert created.json()["changes"] == {"commission_rate": "0.0800"}


async def test_hard_limits_are_refused_at_drafting(
    client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    (author,) = await make_members(1)
    bylaws = (await client.get("/v1/governance/bylaws")).json()
    assert bylaws["hard_limits"]["max_commission_rate"] == "0.25"
    for changes in (
        {"commission_rate": 0.26},
        {"commission_cap_cents": bylaws["hard_limits"]["max_commission_cap_cents"] + 1},
        {"base_cents": bylaws["hard_limits"]["max_fare_field_cents"] + 1},
    ):
        refused = await client.post(
            "/v1/governance/proposals", json=proposal_body(changes=changes), headers=author.headers
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "hard_limit"
    at_limit = await client.post(
        "/v1/governance/proposals",
        json=proposal_body(changes={"commission_rate": 0.25}),
        headers=author.headers,
    )
    assert at_limit.status_code == 201


async def test_drafting_refuses_bad_input(
    client: httpx.AsyncClient, make_members: MakeMembers, driver: Account, rider: Account
) -> None:
    (author,) = await make_members(1)
    post = "/v1/governance/proposals"
    outsider = await client.post(post, json=proposal_body(), headers=driver.headers)
    assert outsider.status_code == 403 and outsider.json()["error"] == "not_a_member"
    assert (await client.post(post, json=proposal_body(), headers=rider.headers)).status_code == 403
    too_short = await client.post(
        post, json=proposal_body(closes_at=closes_in(60)), headers=author.headers
    )
    assert too_short.status_code == 422 and too_short.json()["error"] == "voting_window"
    too_long = await client.post(
        post, json=proposal_body(closes_at=closes_in(30 * DAY)), headers=author.headers
    )
    assert too_long.json()["error"] == "voting_window"
    effective_early = await client.post(
        post, json=proposal_body(effective_at=closes_in(DAY)), headers=author.headers
    )
    assert effective_early.json()["error"] == "effective_at"
    for bad in (
        proposal_body(changes={}),
        proposal_body(changes={"surge": 2}),
        proposal_body(changes={"base_cents": -1}),
        proposal_body(changes={"commission_rate": "NaN"}),
        proposal_body(changes={"commission_rate": 0.12345}),
        proposal_body(closes_at="2030-01-01T00:00:00"),  # no timezone
    ):
        malformed = await client.post(post, json=bad, headers=author.headers)
        assert malformed.status_code == 422, bad


async def test_scheduled_proposal_opens_by_itself_with_the_roll_of_that_moment(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, travel: Any
) -> None:
    from governance.tasks import open_due_proposals

    early, late = await make_members(2)
    travel(-timedelta(days=3))
    body = proposal_body(opens_at=closes_in(3600), closes_at=closes_in(3600 + DAY))
    created = await client.post("/v1/governance/proposals", json=body, headers=early.headers)
    proposal_id = created.json()["id"]
    assert created.json()["status"] == "scheduled"
    early_vote = await client.post(
        f"/v1/governance/proposals/{proposal_id}/votes",
        json={"choice": "yes"},
        headers=early.headers,
    )
    assert early_vote.status_code == 409 and early_vote.json()["error"] == "voting_not_open"

    travel(timedelta(hours=1, seconds=1))
    assert proposal_id in [str(p) for p in await open_due_proposals(app.state)]
    opened = (
        await client.get(f"/v1/governance/proposals/{proposal_id}", headers=late.headers)
    ).json()
    assert opened["status"] == "open" and opened["roll_size"] == 2
