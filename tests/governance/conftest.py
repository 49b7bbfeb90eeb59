"""Governance fixtures: an operator, members admitted over REST, and a roll that starts empty."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core import clock
from dispatch.core.database import transaction
from governance.membership import set_member_status
from governance.models import Member, MemberStatus
from tests.conftest import Account, make_account, make_operator

MakeMembers = Callable[[int], Awaitable[list[Account]]]
# The audit log is append-only (a trigger); tests that play a forger lift it in a rolled-back session.
UNLOCK = "ALTER TABLE governance_audit DISABLE TRIGGER governance_audit_append_only"
LOCK = "ALTER TABLE governance_audit ENABLE TRIGGER governance_audit_append_only"


@pytest.fixture
async def operator(app: Any, client: httpx.AsyncClient) -> Account:
    return await make_operator(client, app)


@pytest.fixture(autouse=True)
async def empty_roll(app: Any, operator: Account) -> None:
    """Each test counts its own voters: suspend whoever earlier tests (or the demo) admitted."""
    async with transaction(app.state) as session:
        active = (
            await session.execute(
                select(Member.user_id).where(Member.status == MemberStatus.active)
            )
        ).scalars()
        for member_id in list(active):
            await set_member_status(
                session, uuid.UUID(operator.id), member_id, MemberStatus.suspended
            )


@pytest.fixture
def make_members(client: httpx.AsyncClient, operator: Account) -> MakeMembers:
    async def make(count: int) -> list[Account]:
        accounts = []
        for _ in range(count):
            account = await make_account(client, "driver")
            admitted = await client.post(
                "/v1/governance/members", json={"user_id": account.id}, headers=operator.headers
            )
            assert admitted.status_code == 201, admitted.text
            accounts.append(account)
        return accounts

    return make


@pytest.fixture
def travel() -> Iterator[Callable[[timedelta], None]]:
    """Move this process's clock; reset after the test. Tests go back in time first, so what
    they enact is history for later tests rather than a future policy. Make accounts (and their
    tokens, checked against real time) before moving the clock."""
    yield clock.advance
    clock.reset()


def closes_in(seconds: float) -> str:
    return (clock.utcnow() + timedelta(seconds=seconds)).isoformat()


@pytest.fixture
async def scratch(app: Any) -> AsyncIterator[AsyncSession]:
    """A session whose tampering is rolled back, so the shared log stays honest."""
    async with app.state.sessionmaker() as session:
        await session.execute(text(UNLOCK))
        yield session
        await session.rollback()
