"""Statements that belong to no domain: the readiness probe's round trip."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class HealthRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def ping(self) -> None:
        """Raises unless PostgreSQL answers a statement on this connection."""
        await self.connection.execute(text("SELECT 1"))
