from __future__ import annotations

from fastapi import APIRouter

from dispatch.core.database import SessionDep
from dispatch.core.errors import Unavailable, responses
from dispatch.fares.repository import FareRepository
from dispatch.fares.schemas import PolicyRead
from dispatch.fares.service import current_policy

router = APIRouter(prefix="/v1/governance", tags=["governance"])


@router.get("/policy", responses=responses(Unavailable))
async def policy_in_force(session: SessionDep) -> PolicyRead:
    return PolicyRead.model_validate(await current_policy(session))


@router.get("/policies")
async def policy_history(session: SessionDep) -> list[PolicyRead]:
    return [PolicyRead.model_validate(p) for p in await FareRepository(session).policies()]
