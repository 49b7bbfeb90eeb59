"""The demo co-op's governance: an operator, the demo drivers as members, one open proposal.
The assembly's demo (`dispatch/demo.py`) made the drivers and passes them in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.repository import AccountRepository
from dispatch.accounts.service import create_operator
from dispatch.core.clock import utcnow
from dispatch.core.settings import Settings
from governance.membership import admit_member
from governance.models import ProposalStatus
from governance.proposals import draft_proposal
from governance.repository import GovernanceRepository
from governance.schemas import PolicyChanges, ProposalCreate

DEMO_OPERATOR = ("Olu Operator", "operator@demo.coop")
DEMO_PROPOSAL_TITLE = "Cut the co-op commission to 8%"


async def seed_demo_governance(
    session: AsyncSession, settings: Settings, driver_emails: Sequence[str], password: str
) -> tuple[str, str]:
    """Idempotent; returns the demo operator's (name, email), who logs in with `password`."""
    accounts = AccountRepository(session)
    repository = GovernanceRepository(session)
    name, email = DEMO_OPERATOR
    operator = await accounts.by_email(email)
    if operator is None:
        operator = await create_operator(session, email, password, name)
    author = None
    for driver_email in driver_emails:
        driver = await accounts.by_email(driver_email)
        if driver is None:
            continue
        if await repository.member(driver.id) is None:
            await admit_member(session, operator.id, driver.id)
        author = author or driver
    pending = [
        p
        for status in (ProposalStatus.open, ProposalStatus.scheduled)
        for p in await repository.proposals(status, 200)
    ]
    if author is not None and not any(p.title == DEMO_PROPOSAL_TITLE for p in pending):
        window = min(
            max(3 * 86_400, settings.governance_min_voting_s), settings.governance_max_voting_s
        )
        body = ProposalCreate(
            title=DEMO_PROPOSAL_TITLE,
            rationale=(
                "Dispatch costs have fallen since launch; 8% still covers them and leaves "
                "more of every fare with the driver who earned it."
            ),
            changes=PolicyChanges(commission_rate=Decimal("0.08")),
            closes_at=utcnow() + timedelta(seconds=window),
        )
        await draft_proposal(session, settings, author.id, body)
    return name, email
