from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from dispatch.accounts.dependencies import (
    CurrentDriver,
    CurrentOperator,
    CurrentUser,
    SettingsDep,
)
from dispatch.core.database import SessionDep
from dispatch.core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
    Unprocessable,
    responses,
)
from dispatch.fares.repository import FareRepository
from dispatch.fares.schemas import PolicyRead
from dispatch.fares.service import current_policy
from dispatch.idempotency.dependencies import IdempotencyDep, IdempotentRoute
from governance import membership, proposals, views
from governance.models import MemberStatus, ProposalStatus
from governance.repository import GovernanceRepository
from governance.schemas import (
    AuditEntryRead,
    BylawsRead,
    ImpactRead,
    MemberAdmit,
    MemberRead,
    ProposalCreate,
    ProposalRead,
    VoteCreate,
    VoteRead,
)

router = APIRouter(prefix="/v1/governance", tags=["governance"], route_class=IdempotentRoute)


@router.get("/policy", responses=responses(Unavailable))
async def policy_in_force(session: SessionDep) -> PolicyRead:
    return PolicyRead.model_validate(await current_policy(session))


@router.get("/policies")
async def policy_history(session: SessionDep) -> list[PolicyRead]:
    return [PolicyRead.model_validate(p) for p in await FareRepository(session).policies()]


@router.get("/bylaws")
async def get_bylaws(settings: SettingsDep) -> BylawsRead:
    return proposals.bylaws(settings)


@router.post(
    "/proposals",
    status_code=status.HTTP_201_CREATED,
    responses=responses(Forbidden, Conflict, Unprocessable),
)
async def draft_proposal(
    body: ProposalCreate, driver: CurrentDriver, session: SessionDep, settings: SettingsDep
) -> ProposalRead:
    proposal = await proposals.draft_proposal(session, settings, driver.user_id, body)
    return (await views.proposal_views(session, [proposal], driver.user_id))[0]


@router.get("/proposals", responses=responses(Forbidden))
async def list_proposals(
    user: CurrentUser,
    session: SessionDep,
    status: Literal["scheduled", "open", "passed", "rejected", "failed_quorum"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ProposalRead]:
    viewer = await membership.require_viewer(session, user)
    found = await GovernanceRepository(session).proposals(
        ProposalStatus(status) if status else None, limit
    )
    return await views.proposal_views(session, found, viewer)


@router.get("/proposals/{proposal_id}", responses=responses(Forbidden, NotFound))
async def get_proposal(
    proposal_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> ProposalRead:
    viewer = await membership.require_viewer(session, user)
    proposal = await proposals.get_proposal(session, proposal_id)
    return (await views.proposal_views(session, [proposal], viewer))[0]


@router.post("/proposals/{proposal_id}/votes", responses=responses(Forbidden, NotFound, Conflict))
async def vote(
    proposal_id: uuid.UUID,
    body: VoteCreate,
    driver: CurrentDriver,
    session: SessionDep,
    _: IdempotencyDep,
) -> VoteRead:
    return await proposals.cast_vote(session, driver.user_id, proposal_id, body.choice)


@router.get("/proposals/{proposal_id}/impact", responses=responses(Forbidden, NotFound))
async def proposal_impact(
    proposal_id: uuid.UUID, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> ImpactRead:
    await membership.require_viewer(session, user)
    proposal = await proposals.get_proposal(session, proposal_id)
    return await views.impact(session, settings, proposal)


@router.get("/audit", responses=responses(Forbidden))
async def audit_log(
    user: CurrentUser,
    session: SessionDep,
    after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntryRead]:
    await membership.require_viewer(session, user)
    repository = GovernanceRepository(session)
    entries = await repository.audit_entries(after_seq, limit)
    voted_on = {e.proposal_id for e in entries if e.type == "ballot.cast" and e.proposal_id}
    undecided = await repository.undecided_proposal_ids(voted_on)
    views = []
    for entry in entries:
        view = AuditEntryRead.model_validate(entry)
        if entry.type == "ballot.cast" and entry.proposal_id in undecided:
            if "choice" in view.payload:  # logged in the clear, before commitments
                view.payload = {**view.payload, "choice": None}
            view.sealed = True
        views.append(view)
    return views


@router.get("/members/me", responses=responses(NotFound))
async def my_membership(driver: CurrentDriver, session: SessionDep) -> MemberRead:
    return await membership.my_membership(session, driver.user_id)


@router.get("/members")
async def list_members(operator: CurrentOperator, session: SessionDep) -> list[MemberRead]:
    return await membership.members(session)


@router.post(
    "/members", status_code=status.HTTP_201_CREATED, responses=responses(NotFound, Conflict)
)
async def admit_member(
    body: MemberAdmit, operator: CurrentOperator, session: SessionDep
) -> MemberRead:
    return await membership.admit_member(session, operator.user_id, body.user_id)


@router.post("/members/{user_id}/suspend", responses=responses(NotFound, Conflict))
async def suspend_member(
    user_id: uuid.UUID, operator: CurrentOperator, session: SessionDep
) -> MemberRead:
    return await membership.set_member_status(
        session, operator.user_id, user_id, MemberStatus.suspended
    )


@router.post("/members/{user_id}/reinstate", responses=responses(NotFound, Conflict))
async def reinstate_member(
    user_id: uuid.UUID, operator: CurrentOperator, session: SessionDep
) -> MemberRead:
    return await membership.set_member_status(
        session, operator.user_id, user_id, MemberStatus.active
    )
