from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from dispatch.fares.pricing import price
from tests.conftest import Account
from tests.fixtures.fares import rules_of
from tests.governance.conftest import MakeMembers
from tests.governance.helpers import DAY, close, open_proposal, policy_version, quote, vote


async def test_automatic_close_enacts_and_quotes_use_the_right_version(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, rider: Account, travel: Any
) -> None:
    members = await make_members(3)
    travel(-timedelta(days=3))
    proposal = await open_proposal(
        client, members[0], {"commission_rate": 0.05, "per_km_cents": 140}, window_s=DAY
    )
    pid = proposal["id"]
    for member in members:
        assert (await vote(client, member, pid, "yes")).status_code == 200

    travel(timedelta(seconds=DAY - 30))
    before = await quote(client, rider)
    travel(timedelta(seconds=31))
    closed = await close(app, client, members[0], pid)
    assert closed["status"] == "passed" and closed["tally"] == {"yes": 3, "no": 0, "abstain": 0}
    version = closed["policy_version"]
    enacted = await policy_version(client, version)
    assert enacted["proposal_id"] == pid
    assert enacted["commission_rate"] == 0.05 and enacted["per_km_cents"] == 140
    assert before["policy_version"] < version

    effective_at = datetime.fromisoformat(enacted["effective_at"])
    from dispatch.core.clock import utcnow

    if effective_at > utcnow():  # a later policy from another test sets the pace
        travel(effective_at - utcnow() + timedelta(seconds=1))
    after = await quote(client, rider)
    assert after["policy_version"] == version
    expected = price(rules_of(enacted), after["distance_m"], after["duration_s"])
    assert (after["total_cents"], after["coop_cents"]) == (
        expected.total_cents,
        expected.coop_cents,
    )

    # The quote made before the change keeps its locked price.
    old = await policy_version(client, before["policy_version"])
    locked = price(rules_of(old), before["distance_m"], before["duration_s"])
    assert before["total_cents"] == locked.total_cents
    ride = await client.post(
        "/v1/rider/rides", json={"quote_id": before["id"]}, headers=rider.headers
    )
    if ride.status_code == 201:  # still within the quote's lifetime
        assert ride.json()["fare"]["total_cents"] == before["total_cents"]
        await client.post(f"/v1/rider/rides/{ride.json()['id']}/cancel", headers=rider.headers)


async def test_two_passed_proposals_take_effect_in_the_order_they_closed(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, travel: Any
) -> None:
    author, second = await make_members(2)
    travel(-timedelta(days=3))
    from dispatch.core.clock import utcnow

    later = (utcnow() + timedelta(seconds=DAY + 7200)).isoformat()
    first = await open_proposal(client, author, {"base_cents": 260}, effective_at=later)
    travel(timedelta(seconds=60))
    then = await open_proposal(client, author, {"minimum_cents": 900})
    for pid in (first["id"], then["id"]):
        for member in (author, second):
            assert (await vote(client, member, pid, "yes")).status_code == 200

    travel(timedelta(seconds=DAY + 61))
    closed_first = await close(app, client, author, first["id"])
    closed_then = await close(app, client, author, then["id"])
    assert closed_then["policy_version"] == closed_first["policy_version"] + 1
    earlier = await policy_version(client, closed_first["policy_version"])
    newer = await policy_version(client, closed_then["policy_version"])
    assert newer["effective_at"] >= earlier["effective_at"]
    assert datetime.fromisoformat(earlier["effective_at"]) >= datetime.fromisoformat(later)
    # The later policy builds on the earlier one: both changes hold.
    assert newer["base_cents"] == 260 and newer["minimum_cents"] == 900


async def test_impact_preview_reprices_recent_rides(
    client: httpx.AsyncClient,
    make_members: MakeMembers,
    operator: Account,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whatever rides earlier tests completed: show the figures even for a driver or two
    # (test_proposal_limits.py checks they are withheld then).
    monkeypatch.setattr(settings, "governance_min_impact_drivers", 1)
    (author,) = await make_members(1)
    proposal = await open_proposal(client, author, {"commission_rate": 0.02})
    impact = await client.get(
        f"/v1/governance/proposals/{proposal['id']}/impact", headers=author.headers
    )
    assert impact.status_code == 200, impact.text
    body = impact.json()
    before, after = body["before"], body["after"]
    assert before["rides"] == after["rides"]
    assert after["total_fare_cents"] == before["total_fare_cents"]  # only the split changes
    assert after["coop_revenue_cents"] <= before["coop_revenue_cents"]
    assert after["driver_earnings_cents"] >= before["driver_earnings_cents"]
    for figures in (before, after):
        assert (
            figures["driver_earnings_cents"] + figures["coop_revenue_cents"]
            == figures["total_fare_cents"]
        )
    as_operator = await client.get(
        f"/v1/governance/proposals/{proposal['id']}/impact", headers=operator.headers
    )
    assert as_operator.status_code == 200
    missing = await client.get(
        "/v1/governance/proposals/00000000-0000-0000-0000-000000000000/impact",
        headers=author.headers,
    )
    assert missing.status_code == 404


async def test_concurrent_closers_enact_once(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, travel: Any
) -> None:
    import asyncio

    from sqlalchemy import func, select

    from dispatch.core.database import transaction
    from dispatch.fares.models import FarePolicy
    from governance.models import AuditEntry
    from governance.tasks import close_due_proposals

    (member,) = await make_members(1)
    travel(-timedelta(days=3))
    pid = (await open_proposal(client, member, {"per_km_cents": 135}))["id"]
    assert (await vote(client, member, pid, "yes")).status_code == 200
    travel(timedelta(seconds=DAY + 1))
    results = await asyncio.gather(*(close_due_proposals(app.state) for _ in range(4)))
    assert sum(str(p) == pid for closed in results for p in closed) == 1
    async with transaction(app.state) as session:
        policies = await session.scalar(
            select(func.count()).select_from(FarePolicy).where(FarePolicy.proposal_id == pid)
        )
        closes = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.proposal_id == pid, AuditEntry.type == "proposal.closed")
        )
    assert (policies, closes) == (1, 1)


async def test_a_close_waits_for_a_vote_in_flight(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, travel: Any
) -> None:
    """A vote holds a share lock on its proposal; the closer skips it and counts it next tick."""
    from sqlalchemy import select

    from governance.models import Proposal
    from governance.tasks import close_due_proposals

    (member,) = await make_members(1)
    travel(-timedelta(days=3))
    pid = (await open_proposal(client, member, {"per_km_cents": 131}))["id"]
    travel(timedelta(seconds=DAY + 1))
    async with app.state.sessionmaker() as voting:
        await voting.execute(
            select(Proposal.id).where(Proposal.id == pid).with_for_update(read=True)
        )
        assert pid not in [str(p) for p in await close_due_proposals(app.state)]
        await voting.rollback()
    assert pid in [str(p) for p in await close_due_proposals(app.state)]
