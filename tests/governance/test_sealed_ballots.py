"""The open audit log must not be a running tally: no field of a sealed ballot, nor its hash,
may let a reader recover the choice by trying each of the three."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from governance import audit
from governance.models import AuditEntry
from tests.conftest import Account
from tests.governance.conftest import MakeMembers
from tests.governance.helpers import (
    CHOICES,
    DAY,
    close,
    guesses,
    hash_fields,
    open_proposal,
    rehashed,
    vote,
)


async def test_a_non_voter_cannot_recover_any_open_choice(
    client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    a, b, c, d, reader = await make_members(5)
    pid = (await open_proposal(client, a, {"per_km_cents": 175}))["id"]
    for member, choice in ((a, "yes"), (b, "no"), (c, "abstain"), (d, "yes"), (a, "no")):
        assert (await vote(client, member, pid, choice)).status_code == 200

    log = (
        await client.get("/v1/governance/audit", params={"limit": 1000}, headers=reader.headers)
    ).json()
    ballots = [e for e in log if e["type"] == "ballot.cast" and e["proposal_id"] == pid]
    assert len(ballots) == 5
    for entry in ballots:
        assert entry["sealed"] is True
        text = json.dumps(entry["payload"])
        assert not any(f'"{choice}"' in text for choice in CHOICES), entry
        for choice in CHOICES:
            assert not guesses(entry, choice) & hash_fields(entry), (
                f"the open log reveals a {choice!r} ballot: {entry}"
            )
        # What the reader sees is what was hashed: the chain checks out without the choice.
        created_at = datetime.fromisoformat(entry["created_at"]).astimezone(UTC)
        assert entry["hash"] == audit.entry_hash(
            entry["seq"],
            entry["prev_hash"],
            entry["type"],
            entry["proposal_id"],
            entry["payload"],
            created_at,
        )
    # Two ballots with the same choice do not look alike either.
    commitments = [e["payload"]["commitment"] for e in ballots]
    assert len(set(commitments)) == len(commitments)


@pytest.fixture
async def closed(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, travel: Any
) -> tuple[str, Account]:
    """A passed proposal, and a member who reads the log (made before `scratch` locks it)."""
    a, b, c, reader = await make_members(4)
    travel(-timedelta(days=3))
    pid = str((await open_proposal(client, a, {"per_minute_cents": 37}))["id"])
    for member, choice in ((a, "no"), (b, "yes"), (c, "yes"), (a, "yes")):
        assert (await vote(client, member, pid, choice)).status_code == 200
    travel(timedelta(seconds=DAY + 1))
    assert (await close(app, client, a, pid))["status"] == "passed"
    return pid, reader


async def test_choices_are_revealed_at_close_and_a_tampered_reveal_fails_verify(
    client: httpx.AsyncClient,
    closed: tuple[str, Account],
    scratch: AsyncSession,
) -> None:
    pid, reader = closed
    log = (
        await client.get("/v1/governance/audit", params={"limit": 1000}, headers=reader.headers)
    ).json()
    mine = [e for e in log if e["proposal_id"] == pid]
    assert not any(e["sealed"] for e in mine)
    revealed = [e for e in mine if e["type"] == "ballots.revealed"]
    assert len(revealed) == 1
    choices = sorted(b["choice"] for b in revealed[0]["payload"]["ballots"])
    assert choices == ["yes", "yes", "yes"]  # each voter's last ballot; a's "no" was replaced
    assert all(len(b["salt"]) >= 32 for b in revealed[0]["payload"]["ballots"])  # >= 128 bits

    entries = list((await scratch.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars())
    assert audit.verify_entries(entries).ok
    assert (await audit.verify(scratch)).ok
    reveal_seq = revealed[0]["seq"]

    def flip(entry: AuditEntry, payload: dict[str, Any]) -> dict[str, Any]:
        if entry.seq != reveal_seq:
            return payload
        first, *rest = payload["ballots"]
        return {**payload, "ballots": [{**first, "choice": "no"}, *rest]}

    report = audit.verify_entries(rehashed(entries, flip))
    assert report.finding is not None and report.finding.seq == reveal_seq
    assert "commitment" in report.finding.problem

    def drop(entry: AuditEntry, payload: dict[str, Any]) -> dict[str, Any]:
        return (
            {**payload, "ballots": payload["ballots"][1:]} if entry.seq == reveal_seq else payload
        )

    report = audit.verify_entries(rehashed(entries, drop))
    assert report.finding is not None and "never revealed" in report.finding.problem
