"""Process entry points: the ASGI factories uvicorn imports and the dispatcher's main."""

from __future__ import annotations

from fastapi import FastAPI

from dispatch.app import create_app, default_eta
from dispatch.core.database import SessionSource, transaction
from dispatch.core.heap import freeze_startup_heap
from dispatch.core.settings import Settings, get_settings
from dispatch.core.state import ProcessState
from dispatch.demo import DEMO_PASSWORD, DemoLogin, seed_demo
from dispatch.dispatcher.worker import PeriodicJob, dispatch_forever
from dispatch.idempotency.tasks import purge_expired_keys
from dispatch.metrics import start_dispatcher_metrics
from governance.demo import seed_demo_governance
from governance.tasks import governance_tick


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """What every dispatcher process runs between batches."""

    async def purge_keys(state: SessionSource) -> None:
        await purge_expired_keys(state, settings.idempotency_key_ttl_s)

    return [
        PeriodicJob("purge idempotency keys", purge_keys, every_s=60.0),
        # Opens and closes due proposals on time.
        PeriodicJob("governance", governance_tick),
    ]


def api_only() -> FastAPI:
    return create_app(get_settings(), with_api=True, with_dispatcher=False)


def api_and_dispatcher() -> FastAPI:
    settings = get_settings()
    return create_app(
        settings, with_api=True, with_dispatcher=True, periodic_jobs=periodic_jobs(settings)
    )


async def run_dispatcher(settings: Settings) -> None:
    state = ProcessState.open(settings, pool_size=4)
    metrics = start_dispatcher_metrics(
        settings.dispatcher_metrics_host,
        settings.dispatcher_metrics_port,
        token=settings.metrics_token,
    )
    if settings.gc_freeze:
        freeze_startup_heap()
    try:
        await dispatch_forever(
            state,
            settings,
            default_eta(settings),
            periodic_jobs(settings),
            on_cycle=metrics.observe,
        )
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
