"""What a process holds: settings, the database engine and its sessions, Redis. Built in one place
per process (`ProcessState.open`: the API's lifespan, the dispatcher's main, a CLI command) and
closed once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatch.core.database import create_engine, create_sessionmaker
from dispatch.core.redis import Redis, create_redis
from dispatch.core.settings import Settings


@dataclass(eq=False)
class ProcessState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis

    @classmethod
    def open(cls, settings: Settings, **engine_options: Any) -> ProcessState:
        engine = create_engine(settings, **engine_options)
        return cls(settings, engine, create_sessionmaker(engine), create_redis(settings.redis_url))

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()
