"""Process entry points: the ASGI factories uvicorn imports and the dispatcher's main."""

from __future__ import annotations

from fastapi import FastAPI

from dispatch.app import create_app, default_eta
from dispatch.core.database import transaction
from dispatch.core.heap import freeze_startup_heap
from dispatch.core.settings import Settings, get_settings
from dispatch.core.state import ProcessState
from dispatch.demo import DEMO_PASSWORD, DemoLogin, seed_demo
from dispatch.dispatcher.worker import dispatch_forever
from dispatch.metrics import start_dispatcher_metrics
from governance.demo import seed_demo_governance


def api_only() -> FastAPI:
    return create_app(get_settings(), with_api=True, with_dispatcher=False)


def api_and_dispatcher() -> FastAPI:
    return create_app(get_settings(), with_api=True, with_dispatcher=True)


async def run_dispatcher(settings: Settings) -> None:
    state = ProcessState.open(settings, pool_size=4)
    start_dispatcher_metrics(
        state,
        settings.dispatcher_metrics_host,
        settings.dispatcher_metrics_port,
        settings.metrics_token,
    )
    if settings.gc_freeze:
        freeze_startup_heap()
    try:
        await dispatch_forever(state, settings, default_eta(settings))
    finally:
        await state.close()


async def seed_demo_coop(settings: Settings) -> list[DemoLogin]:
    state = ProcessState.open(settings, pool_size=1)
    try:
        async with transaction(state) as session:
            logins = await seed_demo(session, settings.region, settings.currency)
            drivers = [login.email for login in logins if login.role == "driver"]
            name, email = await seed_demo_governance(session, settings, drivers, DEMO_PASSWORD)
            return [*logins, DemoLogin("operator", name, email, DEMO_PASSWORD)]
    finally:
        await state.close()
