from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.models import Role, UserAccount
from dispatch.accounts.repository import AccountRepository
from dispatch.core.clock import utcnow
from dispatch.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from dispatch.core.security import TokenClaims, hash_password
from dispatch.core.settings import Settings, get_settings
from dispatch.events.outbox import record_event
from dispatch.fares.models import FarePolicy
from dispatch.fares.pricing import FareRules, price
from dispatch.fares.service import rules_of
from governance import audit
from governance.models import Choice, Member, MemberStatus, Proposal, ProposalStatus, RollEntry
from governance.repository import GovernanceRepository
from governance.rules import Tally, decide, parse_fraction
from governance.schemas import (
    BylawsRead,
    FigureSet,
    ImpactRead,
    MemberRead,
    ProposalCreate,
    ProposalRead,
    TallyRead,
    VoteRead,
)

CENTS_FIELDS = (
    "base_cents",
    "per_km_cents",
    "per_minute_cents",
    "minimum_cents",
    "booking_fee_cents",
)
COMMISSION_FIELDS = ("commission_rate", "commission_cap_cents")
POLICY_FIELDS = (*CENTS_FIELDS, *COMMISSION_FIELDS)
IMPACT_WINDOW = timedelta(days=30)
CLOCK_GRACE_S = 60


def rate_text(rate: Decimal) -> str:
    return str(rate.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


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


# Accounts and membership


async def create_operator(
    session: AsyncSession, email: str, password: str, name: str
) -> UserAccount:
    if len(password) < 8:
        raise Unprocessable("the password needs at least 8 characters", code="weak_password")
    accounts = AccountRepository(session)
    if await accounts.by_email(email) is not None:
        raise Conflict("an account with this email already exists", code="email_taken")
    user = UserAccount(
        id=uuid.uuid4(),
        email=email.lower(),
        password_hash=hash_password(password),
        name=name,
        role=Role.operator,
    )
    accounts.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("an account with this email already exists", code="email_taken") from exc
    return user


def member_read(member: Member, user: UserAccount) -> MemberRead:
    return MemberRead(
        user_id=member.user_id,
        name=user.name,
        email=user.email,
        status=member.status.value,
        admitted_at=member.admitted_at,
        status_changed_at=member.status_changed_at,
    )


async def members(session: AsyncSession) -> list[MemberRead]:
    return [member_read(m, u) for m, u in await GovernanceRepository(session).members()]


async def admit_member(
    session: AsyncSession, operator_id: uuid.UUID, user_id: uuid.UUID
) -> MemberRead:
    accounts = AccountRepository(session)
    user = await accounts.user(user_id)
    if user is None or user.role is not Role.driver or await accounts.driver(user_id) is None:
        raise NotFound("no registered driver with this id", code="driver_not_found")
    repository = GovernanceRepository(session)
    if await repository.member(user_id, for_update=True) is not None:
        raise Conflict(
            "already a member; reinstate a suspended member instead", code="already_member"
        )
    now = utcnow()
    member = Member(
        user_id=user_id, status=MemberStatus.active, admitted_at=now, status_changed_at=now
    )
    repository.add(member)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("already a member", code="already_member") from exc
    await audit.append(
        session, "member.admitted", {"member": str(user_id), "by": str(operator_id)}, at=now
    )
    return member_read(member, user)


async def set_member_status(
    session: AsyncSession, operator_id: uuid.UUID, user_id: uuid.UUID, status: MemberStatus
) -> MemberRead:
    member = await GovernanceRepository(session).member(user_id, for_update=True)
    user = await AccountRepository(session).user(user_id)
    if member is None or user is None:
        raise NotFound("not a member of the co-op", code="member_not_found")
    if member.status is status:
        raise Conflict(f"the member is already {status.value}", code=f"already_{status.value}")
    now = utcnow()
    member.status = status
    member.status_changed_at = now
    event = "member.suspended" if status is MemberStatus.suspended else "member.reinstated"
    await audit.append(session, event, {"member": str(user_id), "by": str(operator_id)}, at=now)
    await session.flush()
    return member_read(member, user)


async def my_membership(session: AsyncSession, user_id: uuid.UUID) -> MemberRead:
    member = await GovernanceRepository(session).member(user_id)
    user = await AccountRepository(session).user(user_id)
    if member is None or user is None:
        raise NotFound("you are not a member of the co-op", code="not_a_member")
    return member_read(member, user)


async def active_member(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> Member:
    member = await GovernanceRepository(session).member(user_id, for_update=for_update)
    if member is None:
        raise Forbidden("only members of the co-op may do this", code="not_a_member")
    if member.status is not MemberStatus.active:
        raise Forbidden("your membership is suspended", code="member_suspended")
    return member


async def require_viewer(session: AsyncSession, claims: TokenClaims) -> uuid.UUID | None:
    """Members (active or suspended) and operators read governance; returns the member id."""
    if claims.role == Role.operator.value:
        return None
    if await GovernanceRepository(session).member(claims.user_id) is None:
        raise Forbidden("governance is open to members and operators", code="not_a_member")
    return claims.user_id


async def driving_gate(session: AsyncSession, driver_id: Any) -> None:
    if get_settings().require_membership_to_drive:
        member = await GovernanceRepository(session).member(driver_id)
        if member is None or member.status is not MemberStatus.active:
            raise Forbidden("only active members of the co-op may drive", code="not_a_member")


# Proposals


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


def apply_changes(base: FarePolicy, changes: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {name: getattr(base, name) for name in POLICY_FIELDS}
    for name, value in changes.items():
        fields[name] = Decimal(value) if name == "commission_rate" else int(value)
    return fields


def rules_from(fields: dict[str, Any]) -> FareRules:
    return FareRules(**fields)


async def enact(session: AsyncSession, proposal: Proposal, now: datetime) -> FarePolicy:
    # Runs under the audit lock taken by the close entry, so versions follow the close order.
    repository = GovernanceRepository(session)
    base = await repository.latest_policy()
    if base is None:
        raise Conflict("there is no fare policy to amend", code="no_fare_policy")
    fields = apply_changes(base, proposal.changes)
    effective_at = max(proposal.effective_at or now, now, base.effective_at)
    policy = FarePolicy(
        version=base.version + 1,
        currency=base.currency,
        effective_at=effective_at,
        proposal_id=proposal.id,
        **fields,
    )
    repository.add(policy)
    await session.flush()
    proposal.policy_version = policy.version
    proposal.effective_at = effective_at
    serialized = {
        name: rate_text(value) if name == "commission_rate" else value
        for name, value in fields.items()
    }
    await audit.append(
        session,
        "policy.enacted",
        {
            "version": policy.version,
            "base_version": base.version,
            "policy": serialized,
            "effective_at": audit.timestamp(effective_at),
        },
        proposal_id=proposal.id,
        at=now,
    )
    return policy


async def get_proposal(session: AsyncSession, proposal_id: uuid.UUID) -> Proposal:
    proposal = await GovernanceRepository(session).proposal(proposal_id)
    if proposal is None:
        raise NotFound("no such proposal", code="proposal_not_found")
    return proposal


async def proposal_views(
    session: AsyncSession, proposals: list[Proposal], viewer_id: uuid.UUID | None
) -> list[ProposalRead]:
    repository = GovernanceRepository(session)
    ids = [p.id for p in proposals]
    turnouts = await repository.turnouts(ids)
    mine = await repository.my_votes(viewer_id, ids) if viewer_id else {}
    views = []
    for p in proposals:
        closed = p.closed_at is not None
        tally = (
            TallyRead(yes=p.yes_count or 0, no=p.no_count or 0, abstain=p.abstain_count or 0)
            if closed
            else None
        )
        views.append(
            ProposalRead(
                id=p.id,
                title=p.title,
                rationale=p.rationale,
                author_id=p.author_id,
                changes=p.changes,
                status=p.status.value,
                opens_at=p.opens_at,
                closes_at=p.closes_at,
                effective_at=p.effective_at,
                quorum=p.quorum,
                threshold=p.threshold,
                roll_size=p.roll_size,
                turnout=turnouts.get(p.id, 0),
                tally=tally,
                closed_at=p.closed_at,
                policy_version=p.policy_version,
                my_vote=mine.get(p.id),
            )
        )
    return views


# Impact preview


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _median(values: list[int]) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return _half_up(Decimal(ordered[middle - 1] + ordered[middle]) / 2)


def figures(rules: FareRules, rides: list[tuple[uuid.UUID, int, int]]) -> FigureSet:
    total = driver_total = coop_total = 0
    per_driver: dict[uuid.UUID, int] = {}
    for driver_id, distance_m, duration_s in rides:
        fare = price(rules, distance_m, duration_s)
        total += fare.total_cents
        driver_total += fare.driver_cents
        coop_total += fare.coop_cents
        per_driver[driver_id] = per_driver.get(driver_id, 0) + fare.driver_cents
    return FigureSet(
        rides=len(rides),
        average_fare_cents=_half_up(Decimal(total) / len(rides)) if rides else 0,
        total_fare_cents=total,
        driver_earnings_cents=driver_total,
        median_driver_earnings_cents=_median(list(per_driver.values())),
        coop_revenue_cents=coop_total,
    )


async def impact(session: AsyncSession, settings: Settings, proposal: Proposal) -> ImpactRead:
    repository = GovernanceRepository(session)
    if proposal.policy_version is not None:
        # Already enacted: compare with the version it replaced.
        base = await session.get(FarePolicy, proposal.policy_version - 1)
    else:
        base = await repository.latest_policy()
    if base is None:
        raise Conflict("there is no fare policy to compare with", code="no_fare_policy")
    now = utcnow()
    since = now - IMPACT_WINDOW
    rides = await repository.completed_rides(since, now)
    drivers = len({r[0] for r in rides})
    # With one driver the totals are that driver's pay; with a few, each can subtract their own.
    if 0 < drivers < settings.governance_min_impact_drivers:
        return ImpactRead(
            proposal_id=proposal.id,
            window_start=since,
            window_end=now,
            drivers=drivers,
            base_policy_version=base.version,
            suppressed=True,
            before=None,
            after=None,
        )
    return ImpactRead(
        proposal_id=proposal.id,
        window_start=since,
        window_end=now,
        drivers=drivers,
        base_policy_version=base.version,
        before=figures(rules_of(base), rides),
        after=figures(rules_from(apply_changes(base, proposal.changes)), rides),
    )
