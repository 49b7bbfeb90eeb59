"""PostgreSQL engine, sessions and the declarative base."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from sqlalchemy import MetaData, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from dispatch.core.redis import Redis
from dispatch.core.repository import SchemaRepository
from dispatch.core.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


async def schema_revisions(settings: Settings) -> list[str]:
    """Connect once and read the migration revisions the database is at (raising the driver's
    error when PostgreSQL does not answer)."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            return await SchemaRepository(connection).revisions()
    finally:
        await engine.dispose()


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    options: dict[str, Any] = {
        "pool_size": 10,
        "max_overflow": 20,
        "pool_pre_ping": True,
        # A failed statement's message would carry its parameters: riders' places, emails.
        "hide_parameters": True,
        "connect_args": {
            "timeout": settings.database_connect_timeout_s,
            "command_timeout": settings.database_command_timeout_s,
        },
    }
    options.update(kwargs)
    engine = create_async_engine(settings.async_database_url, **options)
    event.listen(engine.sync_engine, "handle_error", _terminated_is_a_disconnect)
    return engine


# The server ended our backend (pg_terminate_backend, shutdown, crash recovery).
TERMINATED_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def _terminated_is_a_disconnect(context: ExceptionContext) -> None:
    """Treat a killed backend or a timed-out statement like a dropped connection, so SQLAlchemy
    throws the connection (and the pool's older ones) away instead of handing it out again."""
    error: BaseException | None = context.original_exception
    while error is not None:
        # A statement that timed out, or was interrupted, may have left the connection
        # mid-protocol ("another operation is in progress") or half-open: never reuse it.
        if (
            getattr(error, "sqlstate", None) in TERMINATED_SQLSTATES
            or isinstance(error, TimeoutError)
            or type(error).__name__ in ("InternalClientError", "InterfaceError")
        ):
            context.is_disconnect = True
            return
        error = error.__cause__


def violated_constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint or unique index PostgreSQL reported, if any."""
    error: BaseException | None = exc.orig
    while error is not None:
        name = getattr(error, "constraint_name", None)
        if name:
            return str(name)
        error = error.__cause__
    return None


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


AfterCommit = Callable[[], Awaitable[None]]


class SessionSource(Protocol):
    """What a transaction needs: a `ProcessState` (`dispatch/core/state.py`) or the API's app
    state, which carries the same fields."""

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...

    @property
    def redis(self) -> Redis: ...

    @property
    def settings(self) -> Settings: ...


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once this session's transaction has committed (never on rollback)."""
    session.info.setdefault("after_commit", []).append(callback)


@asynccontextmanager
async def transaction(state: SessionSource) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, then run the after-commit callbacks."""
    async with state.sessionmaker() as session:
        session.info["redis"] = state.redis
        session.info["region"] = state.settings.region  # where its events are published
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
        for callback in callbacks:
            await callback()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: commit when the handler returns, else roll back."""
    async with transaction(request.app.state) as session:
        yield session


# Function scope: FastAPI commits when the handler returns and *before* the response is sent, so
# a client is never told "done" about a transaction that then fails to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
