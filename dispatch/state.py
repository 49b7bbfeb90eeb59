"""The API process's state, built by `create_app`'s lifespan and read through typed names.

It is the app's `app.state` (a Starlette `State`, so `request.app.state.redis` still works), with
its fields declared: a handler reads `app_state(request).location_index` and mypy knows what it
holds. Processes without the API hold a `dispatch.core.state.ProcessState`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import HTTPConnection

from dispatch.core.redis import Redis
from dispatch.core.settings import Settings

if TYPE_CHECKING:
    from dispatch.dispatcher.cycle import CycleReport
    from dispatch.dispatcher.plausibility import PositionGate
    from dispatch.dispatcher.presence import LocationIndex
    from dispatch.events.hub import EventHub
    from dispatch.matching.eta import EtaModel
    from dispatch.metrics import ApiMetrics
    from dispatch.realtime.connection import ConnectionLimiter

# Checked before a driver goes online (governance installs one: only active members drive).
DrivingGate = Callable[[AsyncSession, Any], Awaitable[None]]


class AppState(State):
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    eta: EtaModel
    event_hub: EventHub
    location_index: LocationIndex
    position_gate: PositionGate
    ws_limiter: ConnectionLimiter
    # Installed by the app hooks (governance, metrics), None until then.
    driving_gate: DrivingGate | None
    metrics: ApiMetrics
    on_cycle: Callable[[CycleReport], None] | None


def app_state_of(app: Starlette) -> AppState:
    state = app.state
    assert isinstance(state, AppState), "create_app builds the app's state"
    return state


def app_state(connection: HTTPConnection) -> AppState:
    return app_state_of(connection.app)


AppStateDep = Annotated[AppState, Depends(app_state)]
