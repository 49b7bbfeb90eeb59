from __future__ import annotations

import uuid

from sqlalchemy import func, select
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

    def add(self, item: UserAccount | Driver) -> None:
        self.session.add(item)
