from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.idempotency.models import IdempotencyKey


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self, user_id: uuid.UUID, key: str, method: str, path: str, request_hash: str, now: datetime
    ) -> bool:
        """Insert the key; True if this transaction now owns it.

        A concurrent claim of the same key waits here until the owner commits (the row is then
        found) or rolls back (the claim then succeeds).
        """
        query = (
            insert(IdempotencyKey)
            .values(
                user_id=user_id,
                key=key,
                method=method,
                path=path,
                request_hash=request_hash,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(IdempotencyKey.key)
        )
        return (await self.session.execute(query)).scalar_one_or_none() is not None

    async def get(self, user_id: uuid.UUID, key: str) -> IdempotencyKey | None:
        query = (
            select(IdempotencyKey)
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def save_response(
        self, user_id: uuid.UUID, key: str, status_code: int, body: bytes
    ) -> None:
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .values(status_code=status_code, response_body=body)
        )

    async def purge_before(self, cutoff: datetime) -> int:
        query = (
            delete(IdempotencyKey)
            .where(IdempotencyKey.created_at < cutoff)
            .returning(IdempotencyKey.key)
        )
        return len((await self.session.execute(query)).all())
