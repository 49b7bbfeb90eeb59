"""How governance plugs into the app without the core importing it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.settings import Settings
from governance.membership import driving_gate


def install(app: FastAPI) -> None:
    # The app's own settings, read on every call (a test may turn the bylaw on at any time).
    settings: Settings = app.state.settings

    async def gate(session: AsyncSession, driver_id: Any) -> None:
        await driving_gate(session, driver_id, settings)

    app.state.driving_gate = gate
