"""Proposals and voting: drafting within the bylaws, opening with a fixed roll, sealed ballots,
and the close that counts them (and hands a passed proposal to enactment)."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.clock import utcnow
from dispatch.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from dispatch.core.settings import Settings
from dispatch.events.outbox import record_event
from dispatch.fares.service import rate_text
from governance import audit
from governance.enactment import enact
from governance.membership import active_member
from governance.models import Choice, Proposal, ProposalStatus, RollEntry
from governance.repository import GovernanceRepository
from governance.rules import Tally, decide, parse_fraction
from governance.schemas import BylawsRead, ProposalCreate, VoteRead

CENTS_FIELDS = (
    "base_cents",
    "per_km_cents",
    "per_minute_cents",
    "minimum_cents",
    "booking_fee_cents",
)
COMMISSION_FIELDS = ("commission_rate", "commission_cap_cents")
CLOCK_GRACE_S = 60


def bylaws(settings: Settings) -> BylawsRead:
    return BylawsRead(
        quorum=settings.governance_quorum,
        fare_threshold=settings.governance_fare_threshold,
        commission_threshold=settings.governance_commission_threshold,
        min_voting_s=settings.governance_min_voting_s,
        max_voting_s=settings.governance_max_voting_s,
        max_schedule_ahead_s=settings.governance_max_schedule_ahead_s,
        max_effective_delay_s=settings.governance_max_effective_delay_s,
        max_open_proposals_per_member=settings.governance_max_open_proposals_per_member,
        min_impact_drivers=settings.governance_min_impact_drivers,
        hard_limits={
            "max_commission_rate": settings.governance_max_commission_rate,
            "max_commission_cap_cents": settings.governance_max_commission_cap_cents,
            "max_fare_field_cents": settings.governance_max_fare_field_cents,
        },
    )


def check_hard_limits(settings: Settings, changes: dict[str, Any]) -> None:
    for name in CENTS_FIELDS:
        if name in changes and changes[name] > settings.governance_max_fare_field_cents:
            raise Unprocessable(
                f"{name} {changes[name]} crosses the bylaw limit of "
                f"{settings.governance_max_fare_field_cents}",
                code="hard_limit",
            )
    rate = changes.get("commission_rate")
    limit = settings.governance_max_commission_rate
    if rate is not None and Fraction(Decimal(rate)) > parse_fraction(limit):
        raise Unprocessable(
            f"commission_rate {rate} crosses the bylaw limit of {limit}", code="hard_limit"
        )
    cap = changes.get("commission_cap_cents")
    if cap is not None and cap > settings.governance_max_commission_cap_cents:
        raise Unprocessable(
            f"commission_cap_cents {cap} crosses the bylaw limit of "
            f"{settings.governance_max_commission_cap_cents}",
            code="hard_limit",
        )


def normalized_changes(body: ProposalCreate) -> dict[str, int | str]:
    changes: dict[str, int | str] = {}
    for name, value in body.changes.model_dump(exclude_none=True).items():
        changes[name] = rate_text(value) if name == "commission_rate" else int(value)
    return changes


async def draft_proposal(
    session: AsyncSession, settings: Settings, author_id: uuid.UUID, body: ProposalCreate
) -> Proposal:
    # The member's row lock serialises one member's drafts, so the open-proposal limit holds.
    await active_member(session, author_id, for_update=True)
    changes = normalized_changes(body)
    check_hard_limits(settings, changes)
    now = utcnow()
    opens_at = body.opens_at or now
    if opens_at < now - timedelta(seconds=CLOCK_GRACE_S):
        raise Unprocessable("opens_at is in the past", code="voting_window")
    ahead = settings.governance_max_schedule_ahead_s
    if opens_at > now + timedelta(seconds=ahead):
        raise Unprocessable(
            f"opens_at is more than {ahead} s ahead (bylaw max_schedule_ahead_s)",
            code="voting_window",
        )
    opens_at = max(opens_at, now)
    window = (body.closes_at - opens_at).total_seconds()
    # A minute's grace for clocks: "closes in 24 h" must not fail by the request's own latency.
    if (
        not settings.governance_min_voting_s - CLOCK_GRACE_S
        <= window
        <= settings.governance_max_voting_s
    ):
        raise Unprocessable(
            f"voting must last between {settings.governance_min_voting_s} s and "
            f"{settings.governance_max_voting_s} s (bylaws); this window is {int(window)} s",
            code="voting_window",
        )
    if body.effective_at is not None and body.effective_at < body.closes_at:
        raise Unprocessable("effective_at must not be before closes_at", code="effective_at")
    delay = settings.governance_max_effective_delay_s
    if body.effective_at is not None and body.effective_at > body.closes_at + timedelta(
        seconds=delay
    ):
        raise Unprocessable(
            f"effective_at is more than {delay} s after closes_at (bylaw max_effective_delay_s)",
            code="effective_at",
        )
    repository = GovernanceRepository(session)
    most = settings.governance_max_open_proposals_per_member
    if await repository.open_proposal_count(author_id) >= most:
        raise Conflict(
            f"you already have {most} scheduled or open proposals (bylaw "
            "max_open_proposals_per_member); draft again when one has closed",
            code="too_many_open_proposals",
        )
    touches_commission = any(name in changes for name in COMMISSION_FIELDS)
    threshold = (
        settings.governance_commission_threshold
        if touches_commission
        else settings.governance_fare_threshold
    )
    proposal = Proposal(
        id=uuid.uuid4(),
        author_id=author_id,
        title=body.title,
        rationale=body.rationale,
        changes=changes,
        quorum=settings.governance_quorum,
        threshold=threshold,
        status=ProposalStatus.scheduled,
        opens_at=opens_at,
        closes_at=body.closes_at,
        effective_at=body.effective_at,
        created_at=now,
    )
    repository.add(proposal)
    await session.flush()
    await audit.append(
        session,
        "proposal.drafted",
        {
            "author": str(author_id),
            "title": proposal.title,
            "rationale": proposal.rationale,
            "changes": changes,
            "quorum": proposal.quorum,
            "threshold": proposal.threshold,
            "opens_at": audit.timestamp(opens_at),
            "closes_at": audit.timestamp(proposal.closes_at),
            "effective_at": audit.timestamp(body.effective_at) if body.effective_at else None,
        },
        proposal_id=proposal.id,
        at=now,
    )
    if opens_at <= now:
        await open_proposal(session, proposal, now)
    return proposal


async def open_proposal(session: AsyncSession, proposal: Proposal, now: datetime) -> None:
    repository = GovernanceRepository(session)
    member_ids = await repository.active_member_ids()
    tokens = [secrets.token_hex(16) for _ in member_ids]
    for member_id, token in zip(member_ids, tokens, strict=True):
        repository.add(RollEntry(proposal_id=proposal.id, member_id=member_id, voter_token=token))
    proposal.status = ProposalStatus.open
    proposal.roll_size = len(member_ids)
    await session.flush()
    await audit.append(
        session,
        "proposal.opened",
        {"roll": sorted(tokens), "roll_size": len(tokens)},
        proposal_id=proposal.id,
        at=now,
    )
    notice = {
        "proposal_id": str(proposal.id),
        "title": proposal.title,
        "changes": proposal.changes,
        "closes_at": proposal.closes_at.isoformat(),
    }
    for member_id in member_ids:
        record_event(session, member_id, "proposal.opened", notice)


async def cast_vote(
    session: AsyncSession, member_id: uuid.UUID, proposal_id: uuid.UUID, choice: str
) -> VoteRead:
    await active_member(session, member_id)
    repository = GovernanceRepository(session)
    # A share lock: votes run side by side, but never alongside the close that counts them.
    proposal = await repository.proposal(proposal_id, lock="share")
    if proposal is None:
        raise NotFound("no such proposal", code="proposal_not_found")
    now = utcnow()
    if proposal.status is ProposalStatus.scheduled or now < proposal.opens_at:
        raise Conflict("voting on this proposal has not opened yet", code="voting_not_open")
    if proposal.status is not ProposalStatus.open or now >= proposal.closes_at:
        raise Conflict("voting on this proposal has closed", code="voting_closed")
    entry = await repository.roll_entry(proposal_id, member_id)
    if entry is None:
        raise Forbidden(
            "you were not an active member when voting opened, so you are not on its roll",
            code="not_on_roll",
        )
    salt = audit.new_salt()
    revisions = await repository.upsert_ballot(
        proposal_id, entry.voter_token, Choice(choice), salt, now
    )
    await audit.append(
        session,
        "ballot.cast",
        {
            "voter": entry.voter_token,
            "commitment": audit.commitment(salt, choice),
            "cast_at": audit.timestamp(now),
        },
        proposal_id=proposal_id,
        at=now,
    )
    return VoteRead(proposal_id=proposal_id, choice=choice, cast_at=now, changed=revisions > 0)


async def close_proposal(session: AsyncSession, proposal: Proposal, now: datetime) -> None:
    """Count, publish and (when passed) enact; the caller holds the proposal's row lock."""
    repository = GovernanceRepository(session)
    openings = await repository.openings(proposal.id)
    await audit.append(
        session,
        "ballots.revealed",
        {
            "ballots": [
                {"voter": token, "choice": choice, "salt": salt} for token, choice, salt in openings
            ]
        },
        proposal_id=proposal.id,
        at=now,
    )
    tally = Tally.of(await repository.choices(proposal.id), proposal.roll_size or 0)
    outcome = decide(tally, parse_fraction(proposal.quorum), parse_fraction(proposal.threshold))
    proposal.status = ProposalStatus(outcome)
    proposal.yes_count, proposal.no_count, proposal.abstain_count = (
        tally.yes,
        tally.no,
        tally.abstain,
    )
    proposal.closed_at = now
    await audit.append(
        session,
        "proposal.closed",
        {**tally.as_dict(), "status": outcome, "closed_at": audit.timestamp(now)},
        proposal_id=proposal.id,
        at=now,
    )
    if proposal.status is ProposalStatus.passed:
        await enact(session, proposal, now)
    await session.flush()
    notice = {
        "proposal_id": str(proposal.id),
        "title": proposal.title,
        "status": outcome,
        "tally": {"yes": tally.yes, "no": tally.no, "abstain": tally.abstain},
        "policy_version": proposal.policy_version,
        "effective_at": (
            proposal.effective_at.isoformat()
            if proposal.policy_version and proposal.effective_at
            else None
        ),
    }
    for member_id in await repository.roll_member_ids(proposal.id):
        record_event(session, member_id, "proposal.closed", notice)


async def get_proposal(session: AsyncSession, proposal_id: uuid.UUID) -> Proposal:
    proposal = await GovernanceRepository(session).proposal(proposal_id)
    if proposal is None:
        raise NotFound("no such proposal", code="proposal_not_found")
    return proposal
