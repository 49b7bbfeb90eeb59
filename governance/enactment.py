"""Enactment: a passed proposal becomes the next fare policy version (written by fares), and the
log records the whole policy it produced."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.fares.models import FarePolicy
from dispatch.fares.service import POLICY_FIELDS, amend_policy, rate_text
from governance import audit
from governance.models import Proposal


async def enact(session: AsyncSession, proposal: Proposal, now: datetime) -> FarePolicy:
    # Runs under the audit lock taken by the close entry, so versions follow the close order.
    base, policy = await amend_policy(
        session,
        proposal.changes,
        effective_at=max(proposal.effective_at or now, now),
        proposal_id=proposal.id,
    )
    proposal.policy_version = policy.version
    proposal.effective_at = policy.effective_at
    fields = {name: getattr(policy, name) for name in POLICY_FIELDS}
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
            "effective_at": audit.timestamp(policy.effective_at),
        },
        proposal_id=proposal.id,
        at=now,
    )
    return policy
