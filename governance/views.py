"""What members read: proposals as the API shows them (turnout while open, the tally once
closed, only the caller's own vote) and the impact preview's statistics."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.clock import utcnow
from dispatch.core.errors import Conflict
from dispatch.core.settings import Settings
from dispatch.fares import service as fares
from dispatch.fares.pricing import FareRules, price
from dispatch.rides.repository import RideRepository
from governance.models import Proposal
from governance.repository import GovernanceRepository
from governance.schemas import FigureSet, ImpactRead, ProposalRead, TallyRead

IMPACT_WINDOW = timedelta(days=30)


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
    if proposal.policy_version is not None:
        # Already enacted: compare with the version it replaced.
        base = await fares.policy(session, proposal.policy_version - 1)
    else:
        base = await fares.latest_policy(session)
    if base is None:
        raise Conflict("there is no fare policy to compare with", code="no_fare_policy")
    now = utcnow()
    since = now - IMPACT_WINDOW
    rides = await RideRepository(session).completed_trips(since, now)
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
        before=figures(fares.rules_of(base), rides),
        after=figures(FareRules(**fares.amended(base, proposal.changes)), rides),
    )
