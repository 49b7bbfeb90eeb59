from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.cli import main
from dispatch.core.database import transaction
from governance import audit
from governance.models import AuditEntry
from tests.governance.conftest import LOCK, UNLOCK, MakeMembers
from tests.governance.helpers import DAY, close, open_proposal, rehashed, vote


@pytest.fixture
async def history(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, travel: Any
) -> str:
    """A full cycle in the log: admissions, a draft, an opening, changed votes, a close, a policy."""
    a, b, c = await make_members(3)
    travel(-timedelta(days=3))
    pid = (await open_proposal(client, a, {"per_minute_cents": 36}))["id"]
    for member, choice in ((a, "no"), (b, "yes"), (c, "abstain"), (a, "yes")):
        assert (await vote(client, member, pid, choice)).status_code == 200
    travel(timedelta(seconds=DAY + 1))
    assert (await close(app, client, a, pid))["status"] == "passed"
    return str(pid)


async def seq_of(session: AsyncSession, pid: str, type: str) -> int:
    query = select(AuditEntry.seq).where(AuditEntry.proposal_id == pid, AuditEntry.type == type)
    return int((await session.execute(query.order_by(AuditEntry.seq))).scalars().first() or 0)


async def test_an_honest_log_verifies(app: Any, history: str) -> None:
    async with transaction(app.state) as session:
        report = await audit.verify(session)
    assert report.ok, report.finding
    assert report.proposals_checked >= 1
    assert await asyncio.to_thread(main, ["governance", "verify"]) == 0


async def test_the_log_is_append_only(app: Any, history: str) -> None:
    async with app.state.sessionmaker() as session:
        with pytest.raises(Exception, match="append-only"):
            await session.execute(text("DELETE FROM governance_audit WHERE seq = 1"))
        await session.rollback()


async def test_verify_catches_a_one_row_edit(history: str, scratch: AsyncSession) -> None:
    seq = await seq_of(scratch, history, "ballot.cast")
    await scratch.execute(
        text(
            "UPDATE governance_audit SET payload = jsonb_set(payload, '{choice}', '\"yes\"') WHERE seq = :s"
        ),
        {"s": seq},
    )
    report = await audit.verify(scratch)
    assert report.finding is not None and report.finding.seq == seq
    assert "edited" in str(report.finding)


async def test_verify_catches_a_deletion(history: str, scratch: AsyncSession) -> None:
    seq = await seq_of(scratch, history, "ballot.cast")
    await scratch.execute(text("DELETE FROM governance_audit WHERE seq = :s"), {"s": seq})
    report = await audit.verify(scratch)
    assert report.finding is not None and report.finding.seq == seq


async def test_verify_catches_a_reordering(history: str, scratch: AsyncSession) -> None:
    first = await seq_of(scratch, history, "ballot.cast")
    swap = "UPDATE governance_audit SET seq = :to WHERE seq = :from"
    for to, frm in ((-1, first), (first, first + 1), (first + 1, -1)):
        await scratch.execute(text(swap), {"to": to, "from": frm})
    report = await audit.verify(scratch)
    assert report.finding is not None and report.finding.seq == first


async def test_verify_catches_a_cut_off_tail(history: str, scratch: AsyncSession) -> None:
    """Dropping the newest entries leaves a valid chain; the tables no longer agree with it."""
    closed = await seq_of(scratch, history, "proposal.closed")
    await scratch.execute(text("DELETE FROM governance_audit WHERE seq >= :s"), {"s": closed})
    report = await audit.verify(scratch)
    assert report.finding is not None and report.finding.seq == closed
    assert "missing from the log" in report.finding.problem


async def test_verify_catches_rehashed_ballot_forgeries(
    history: str, scratch: AsyncSession
) -> None:
    entries = list((await scratch.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars())
    ballot = await seq_of(scratch, history, "ballot.cast")

    def stranger(entry: AuditEntry, payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "voter": "f" * 32} if entry.seq == ballot else payload

    def late(entry: AuditEntry, payload: dict[str, Any]) -> dict[str, Any]:
        return (
            {**payload, "cast_at": "2999-01-01T00:00:00.000000Z"}
            if entry.seq == ballot
            else payload
        )

    for forge, problem in ((stranger, "not on the roll"), (late, "outside the voting window")):
        report = audit.verify_entries(rehashed(entries, forge))
        assert report.finding is not None and report.finding.seq == ballot
        assert problem in report.finding.problem


async def test_verify_recomputes_tallies_even_when_the_chain_is_rehashed(
    history: str, scratch: AsyncSession
) -> None:
    """A forger who rewrites a published tally and recomputes every hash after it is still caught,
    because the tally is recounted from the logged ballots."""
    entries = list((await scratch.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars())
    closed_seq = await seq_of(scratch, history, "proposal.closed")

    def more_yes(entry: AuditEntry, payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "yes": payload["yes"] + 1} if entry.seq == closed_seq else payload

    forged = rehashed(entries, more_yes)
    report = audit.verify_entries(forged)
    assert report.finding is not None and report.finding.seq == closed_seq
    assert "tally" in report.finding.problem


async def test_cli_exits_non_zero_naming_the_bad_entry(
    app: Any, history: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with transaction(app.state) as session:
        seq = await seq_of(session, history, "proposal.drafted")
        await session.execute(text(UNLOCK))
        await session.execute(
            text(
                'UPDATE governance_audit SET payload = payload || \'{"title": "forged"}\' WHERE seq = :s'
            ),
            {"s": seq},
        )
        await session.execute(text(LOCK))
    try:
        assert await asyncio.to_thread(main, ["governance", "verify"]) == 1
        assert f"audit entry #{seq}" in capsys.readouterr().err
    finally:
        async with transaction(app.state) as session:
            await session.execute(text(UNLOCK))
            await session.execute(
                text(
                    "UPDATE governance_audit SET payload = payload || "
                    '\'{"title": "A change to vote on"}\' WHERE seq = :s'
                ),
                {"s": seq},
            )
            await session.execute(text(LOCK))
    assert await asyncio.to_thread(main, ["governance", "verify"]) == 0
