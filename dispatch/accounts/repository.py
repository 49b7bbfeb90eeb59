from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.models import Driver, UserAccount


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_email(self, email: str) -> UserAccount | None:
        query = select(UserAccount).where(func.lower(UserAccount.email) == email.lower())
        return (await self.session.execute(query)).scalar_one_or_none()

    async def user(self, user_id: uuid.UUID) -> UserAccount | None:
        return await self.session.get(UserAccount, user_id)

    async def driver(self, user_id: uuid.UUID, *, for_update: bool = False) -> Driver | None:
        return await self.session.get(Driver, user_id, with_for_update=for_update)

    async def drivers_online(self) -> int:
        query = select(func.count()).select_from(Driver).where(Driver.is_online)
        return (await self.session.execute(query)).scalar_one()

    async def add_user_if_new(self, user: dict[str, Any]) -> uuid.UUID | None:
        """Insert the user unless its email is taken (also by a concurrent insert): its id, or
        None. One statement either way, so a taken email costs the same round trip."""
        query = (
            insert(UserAccount)
            .values(user)
            .on_conflict_do_nothing(index_elements=[UserAccount.email])
            .returning(UserAccount.id)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def add_users_if_missing(self, users: Sequence[dict[str, Any]]) -> int:
        """Bulk insert (a few statements for thousands of rows) of the users whose email is not
        taken; the number inserted."""
        if not users:
            return 0
        query = (
            insert(UserAccount)
            .on_conflict_do_nothing(index_elements=[UserAccount.email])
            .returning(UserAccount.id)
        )
        return len((await self.session.execute(query, list(users))).all())

    async def ids_by_email(self, emails: Sequence[str]) -> dict[str, uuid.UUID]:
        # An array parameter: a list of one per email passes asyncpg's 32,767 parameters.
        given = bindparam("emails", list(emails), type_=ARRAY(String))
        query = select(UserAccount.email, UserAccount.id).where(UserAccount.email == any_(given))
        return {email: user_id for email, user_id in await self.session.execute(query)}

    async def add_drivers_if_missing(self, drivers: Sequence[dict[str, Any]]) -> None:
        if drivers:
            query = insert(Driver).on_conflict_do_nothing(index_elements=[Driver.user_id])
            await self.session.execute(query, list(drivers))

    def add(self, item: UserAccount | Driver) -> None:
        self.session.add(item)
