"""Statements that belong to no domain: the readiness probe's round trip, the schema's revision."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class HealthRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def ping(self) -> None:
        """Raises unless PostgreSQL answers a statement on this connection."""
        await self.connection.execute(text("SELECT 1"))


class SchemaRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def revisions(self) -> list[str]:
        """The Alembic revisions the database is at (none if it was never migrated)."""
        table = await self.connection.scalar(text("SELECT to_regclass('alembic_version')"))
        if table is None:
            return []
        rows = await self.connection.scalars(text("SELECT version_num FROM alembic_version"))
        return sorted(rows)
