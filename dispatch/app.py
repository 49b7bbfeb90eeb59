"""The ASGI app: API routes and, in `serve` mode, the dispatcher loop in the same process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatch.core.database import create_engine, create_sessionmaker, transaction
from dispatch.core.errors import install_error_handlers
from dispatch.core.heap import freeze_startup_heap
from dispatch.core.http_guards import BodyLimitMiddleware, HeadAsGetMiddleware
from dispatch.core.log_privacy import install_log_privacy
from dispatch.core.nul_guard import RejectNulMiddleware
from dispatch.core.openapi import document_auth_errors
from dispatch.core.redis import RegionKeys, create_redis
from dispatch.core.repository import HealthRepository
from dispatch.core.settings import Settings, get_settings
from dispatch.dispatcher.plausibility import PositionGate
from dispatch.dispatcher.presence import LocationIndex
from dispatch.dispatcher.worker import PeriodicJob, dispatch_forever
from dispatch.events.hub import EventHub
from dispatch.fares import service as fares
from dispatch.fares.areas import ServiceAreaCache, ServiceAreas
from dispatch.matching.eta import EtaModel, StraightLineEta
from dispatch.realtime.connection import ConnectionLimiter
from dispatch.state import AppState

log = logging.getLogger(__name__)


def default_eta(settings: Settings) -> EtaModel:
    return StraightLineEta(speed_kmh=settings.eta_speed_kmh, circuity=settings.eta_circuity)


async def _load_service_areas(state: AppState) -> ServiceAreas:
    async with transaction(state) as session:
        return await fares.service_areas(session)


def create_app(
    settings: Settings | None = None,
    *,
    with_api: bool = True,
    with_dispatcher: bool = False,
    periodic_jobs: Sequence[PeriodicJob] = (),
) -> FastAPI:
    settings = settings or get_settings()

    state = AppState()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_privacy()
        state.settings = settings
        state.engine = create_engine(settings)
        state.sessionmaker = create_sessionmaker(state.engine)
        state.redis = create_redis(settings.redis_url)
        state.eta = default_eta(settings)
        state.event_hub = EventHub(state.redis)
        state.location_index = LocationIndex(
            state.redis, RegionKeys(settings.region), settings.location_flush_ms / 1000
        )
        state.position_gate = PositionGate(
            ServiceAreaCache(lambda: _load_service_areas(state), settings.service_area_reload_s),
            max_speed_mps=settings.location_max_speed_mps,
            jitter_m=settings.location_jitter_m,
        )
        state.ws_limiter = ConnectionLimiter()
        state.driving_gate = None
        state.on_cycle = None
        for hook in app_hooks:
            hook(app)
        await state.event_hub.start()
        await state.location_index.start()
        await state.position_gate.areas.reload()
        if settings.gc_freeze:
            freeze_startup_heap()
        dispatcher = (
            asyncio.create_task(
                dispatch_forever(state, settings, state.eta, periodic_jobs, state.on_cycle)
            )
            if with_dispatcher
            else None
        )
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await dispatcher
            await state.location_index.stop()
            await state.event_hub.stop()
            await state.redis.aclose()
            await state.engine.dispose()

    app = FastAPI(
        title="coop-dispatch",
        version="0.1.0",
        summary="Dispatch for driver-owned ride-hailing co-operatives",
        lifespan=lifespan,
    )
    app.state = state
    install_error_handlers(app)
    document_auth_errors(app)
    # Outermost last: the body limit runs first, so nothing behind it reads an oversized body.
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"error": "validation_error", "detail": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def framework_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Bodies that are not even JSON (bad bytes, bad encoding) are malformed payloads: 422.
        if exc.status_code == 400:
            detail = [{"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}]
            return JSONResponse({"error": "validation_error", "detail": detail}, status_code=422)
        code = str(exc.detail).lower().replace(" ", "_")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    if with_api:
        from dispatch.accounts.endpoints import router as auth_router
        from dispatch.rides.endpoints import router as operator_rides_router
        from driver_api.endpoints import router as driver_router
        from governance.endpoints import router as governance_router
        from rider_api.endpoints import router as rider_router

        routers = (
            auth_router,
            rider_router,
            driver_router,
            governance_router,
            operator_rides_router,
        )
        for router in routers:
            app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        try:
            async with state.engine.connect() as connection:
                await HealthRepository(connection).ping()
            await state.redis.ping()
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "detail": type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    return app


# Other packages (governance, metrics) extend the app at startup without the core importing them.
app_hooks: list[Callable[[FastAPI], None]] = []


def _install_metrics(app: FastAPI) -> None:
    from dispatch.metrics import install_api_metrics

    install_api_metrics(app)


app_hooks.append(_install_metrics)


def _install_governance(app: FastAPI) -> None:
    from governance.hooks import install

    install(app)


app_hooks.append(_install_governance)
