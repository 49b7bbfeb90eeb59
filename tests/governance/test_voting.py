from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dispatch.core.database import transaction
from governance.models import Ballot
from tests.conftest import Account, make_account
from tests.governance.conftest import MakeMembers
from tests.governance.helpers import DAY, close, open_proposal, vote


async def test_votes_change_and_only_turnout_shows_until_close(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, travel: Any
) -> None:
    a, b, c, d = await make_members(4)
    travel(-timedelta(days=3))
    proposal = await open_proposal(client, a, {"per_minute_cents": 40})
    pid = proposal["id"]
    assert (await vote(client, a, pid, "no")).json()["changed"] is False
    changed = await vote(client, a, pid, "yes")
    assert changed.status_code == 200 and changed.json()["changed"] is True
    assert (await vote(client, b, pid, "yes")).status_code == 200
    assert (await vote(client, c, pid, "no")).status_code == 200

    as_a = (await client.get(f"/v1/governance/proposals/{pid}", headers=a.headers)).json()
    as_d = (await client.get(f"/v1/governance/proposals/{pid}", headers=d.headers)).json()
    assert as_a["turnout"] == 3 and as_a["tally"] is None and as_a["my_vote"] == "yes"
    assert as_d["my_vote"] is None and "ballots" not in as_d

    travel(timedelta(seconds=DAY + 1))
    closed = await close(app, client, d, pid)
    assert closed["status"] == "passed"
    assert closed["tally"] == {"yes": 2, "no": 1, "abstain": 0}  # a's first "no" does not count
    assert closed["policy_version"] is not None


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        (["yes", "yes"], "passed"),  # 2 of 4: exactly at quorum
        (["yes"], "failed_quorum"),
        (["yes", "no"], "rejected"),  # a tie
        (["abstain", "abstain", "abstain"], "rejected"),  # all abstain
        (["yes", "no", "abstain"], "rejected"),  # abstentions count for quorum only
    ],
)
async def test_quorum_and_threshold_edges(
    app: Any,
    client: httpx.AsyncClient,
    make_members: MakeMembers,
    travel: Any,
    choices: list[str],
    expected: str,
) -> None:
    members = await make_members(4)
    travel(-timedelta(days=3))
    pid = (await open_proposal(client, members[0], {"booking_fee_cents": 160}))["id"]
    for member, choice in zip(members, choices, strict=False):
        assert (await vote(client, member, pid, choice)).status_code == 200
    travel(timedelta(seconds=DAY + 1))
    closed = await close(app, client, members[0], pid)
    assert closed["status"] == expected
    assert (closed["policy_version"] is not None) == (expected == "passed")


async def test_concurrent_double_votes_count_once(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    author, voter = await make_members(2)
    pid = (await open_proposal(client, author, {"minimum_cents": 850}))["id"]
    responses = await asyncio.gather(
        *(vote(client, voter, pid, c) for c in ("yes", "no", "yes", "no"))
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(not r.json()["changed"] for r in responses) == 1
    async with transaction(app.state) as session:
        ballots = await session.scalar(
            select(func.count()).select_from(Ballot).where(Ballot.proposal_id == pid)
        )
    assert ballots == 1
    seen = (await client.get(f"/v1/governance/proposals/{pid}", headers=author.headers)).json()
    assert seen["turnout"] == 1


async def test_votes_refused_with_a_reason(
    app: Any,
    client: httpx.AsyncClient,
    make_members: MakeMembers,
    operator: Account,
    driver: Account,
    rider: Account,
    travel: Any,
) -> None:
    author, suspended = await make_members(2)
    latecomer = await make_account(client, "driver")
    await client.post(f"/v1/governance/members/{suspended.id}/suspend", headers=operator.headers)
    travel(-timedelta(days=3))
    pid = (await open_proposal(client, author, {"per_km_cents": 125}))["id"]
    travel(timedelta(seconds=10))
    admitted = await client.post(  # after voting opened: not on the roll
        "/v1/governance/members", json={"user_id": latecomer.id}, headers=operator.headers
    )
    assert admitted.status_code == 201

    cases: list[tuple[Account, str, int, str]] = [
        (driver, pid, 403, "not_a_member"),
        (suspended, pid, 403, "member_suspended"),
        (latecomer, pid, 403, "not_on_roll"),
        (author, "00000000-0000-0000-0000-000000000000", 404, "proposal_not_found"),
    ]
    for account, target, status, code in cases:
        refused = await vote(client, account, target, "yes")
        assert (refused.status_code, refused.json()["error"]) == (status, code)
    assert (await vote(client, rider, pid, "yes")).status_code == 403
    assert (await vote(client, author, pid, "maybe")).status_code == 422
    assert (await vote(client, author, "not-a-uuid", "yes")).status_code == 422

    travel(timedelta(seconds=DAY))
    late = await vote(client, author, pid, "yes")  # window over, not yet counted
    assert (late.status_code, late.json()["error"]) == (409, "voting_closed")
    closed = await close(app, client, author, pid)
    assert closed["status"] == "failed_quorum"
    after = await vote(client, author, pid, "yes")
    assert (after.status_code, after.json()["error"]) == (409, "voting_closed")
    assert (
        await client.get(f"/v1/governance/proposals/{pid}", headers=rider.headers)
    ).status_code == 403
