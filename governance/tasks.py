"""Opening and closing proposals on time, without a person: run by every dispatcher process."""

from __future__ import annotations

import asyncio
import logging
import uuid

from dispatch.core.clock import utcnow
from dispatch.core.database import SessionSource, transaction
from governance.models import ProposalStatus
from governance.proposals import close_proposal, open_proposal
from governance.repository import GovernanceRepository

log = logging.getLogger(__name__)
BATCH = 50


async def open_due_proposals(state: SessionSource) -> list[uuid.UUID]:
    async with transaction(state) as session:
        due = await GovernanceRepository(session).due_to_open(utcnow(), BATCH)
    opened = []
    for proposal_id in due:
        async with transaction(state) as session:
            # SKIP LOCKED: another dispatcher is already on it.
            proposal = await GovernanceRepository(session).proposal(
                proposal_id, lock="update", skip_locked=True
            )
            now = utcnow()
            if (
                proposal is None
                or proposal.status is not ProposalStatus.scheduled
                or proposal.opens_at > now
            ):
                continue
            await open_proposal(session, proposal, now)
            opened.append(proposal_id)
    return opened


async def close_due_proposals(state: SessionSource) -> list[uuid.UUID]:
    """Close every proposal whose window has ended, one transaction each, oldest first."""
    async with transaction(state) as session:
        due = await GovernanceRepository(session).due_to_close(utcnow(), BATCH)
    closed = []
    for proposal_id in due:
        async with transaction(state) as session:
            proposal = await GovernanceRepository(session).proposal(
                proposal_id, lock="update", skip_locked=True
            )
            if proposal is None:
                break  # busy (a vote or another dispatcher): keep the close order, retry next tick
            now = utcnow()
            if proposal.status is not ProposalStatus.open or proposal.closes_at > now:
                continue
            await close_proposal(session, proposal, now)
            closed.append(proposal_id)
            log.info("proposal %s closed: %s", proposal_id, proposal.status.value)
    return closed


async def governance_tick(state: SessionSource) -> None:
    try:
        await open_due_proposals(state)
        await close_due_proposals(state)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("governance tick failed; retrying next interval")
