"""Who belongs to the co-op: admitting, suspending and reinstating members, and the checks
every other governance action starts with (active member, governance reader)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.models import Role, UserAccount
from dispatch.accounts.repository import AccountRepository
from dispatch.core.clock import utcnow
from dispatch.core.errors import Conflict, Forbidden, NotFound
from dispatch.core.security import TokenClaims
from dispatch.core.settings import Settings
from governance import audit
from governance.models import Member, MemberStatus
from governance.repository import GovernanceRepository
from governance.schemas import MemberRead


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


async def driving_gate(session: AsyncSession, driver_id: Any, settings: Settings) -> None:
    if settings.require_membership_to_drive:
        member = await GovernanceRepository(session).member(driver_id)
        if member is None or member.status is not MemberStatus.active:
            raise Forbidden("only active members of the co-op may drive", code="not_a_member")
