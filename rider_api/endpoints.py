from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, WebSocket

from dispatch.accounts.dependencies import CurrentRider, SettingsDep
from dispatch.core.database import SessionDep
from dispatch.core.errors import (
    Conflict,
    Gone,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    responses,
)
from dispatch.core.geo import LatLng
from dispatch.core.params import IsoDatetime
from dispatch.core.rate_limit import Budget, ClientAddress, take
from dispatch.core.redis import RedisDep
from dispatch.fares import service as fares
from dispatch.fares.schemas import QuoteCreate, QuoteRead
from dispatch.idempotency.dependencies import IdempotencyDep, IdempotentRoute
from dispatch.realtime.connection import Connection, serve
from dispatch.rides import service as rides
from dispatch.rides.repository import RideRepository
from dispatch.rides.schemas import CancelRequest, RideRead, RideRequest
from dispatch.state import AppStateDep

router = APIRouter(prefix="/v1/rider", tags=["rider"], route_class=IdempotentRoute)


@router.post(
    "/quotes",
    status_code=201,
    responses=responses(Unauthorized, Unprocessable, TooManyRequests),
)
async def create_quote(
    body: QuoteCreate,
    rider: CurrentRider,
    session: SessionDep,
    settings: SettingsDep,
    state: AppStateDep,
    redis: RedisDep,
    address: ClientAddress,
) -> QuoteRead:
    budgets = [
        Budget("quote:rider", str(rider.user_id), settings.quotes_per_rider_per_minute),
        Budget("quote:address", address, settings.quotes_per_address_per_minute),
    ]
    await take(
        redis,
        budgets,
        "too many quotes; wait and retry",
        code="quote_rate_limited",
        open_when_unreachable=True,
    )
    quote = await fares.create_quote(session, settings, state.eta, rider.user_id, body)
    return QuoteRead(
        id=quote.id,
        pickup=LatLng(lat=quote.pickup_lat, lng=quote.pickup_lng),
        dropoff=LatLng(lat=quote.dropoff_lat, lng=quote.dropoff_lng),
        total_cents=quote.total_cents,
        driver_cents=quote.driver_cents,
        coop_cents=quote.coop_cents,
        currency=quote.currency,
        breakdown=quote.breakdown,
        policy_version=quote.policy_version,
        distance_m=quote.distance_m,
        duration_s=quote.duration_s,
        created_at=quote.created_at,
        expires_at=quote.expires_at,
    )


@router.post(
    "/rides",
    status_code=201,
    responses=responses(Unauthorized, NotFound, Conflict, Gone, Unprocessable),
)
async def request_ride(
    body: RideRequest,
    rider: CurrentRider,
    session: SessionDep,
    _: IdempotencyDep,
) -> RideRead:
    ride = await rides.request_ride(session, rider.user_id, body.quote_id)
    return await rides.rider_view(session, ride)


@router.get("/rides", responses=responses(Unauthorized))
async def list_rides(
    rider: CurrentRider,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: IsoDatetime | None = None,
) -> list[RideRead]:
    found = await RideRepository(session).rides_of_rider(rider.user_id, limit, before)
    return await rides.rider_views(session, found)


@router.get("/rides/{ride_id}", responses=responses(Unauthorized, NotFound))
async def get_ride(ride_id: uuid.UUID, rider: CurrentRider, session: SessionDep) -> RideRead:
    ride = await rides.rider_ride(session, rider.user_id, ride_id)
    return await rides.rider_view(session, ride)


@router.post("/rides/{ride_id}/cancel", responses=responses(Unauthorized, NotFound, Conflict))
async def cancel_ride(
    ride_id: uuid.UUID,
    rider: CurrentRider,
    session: SessionDep,
    _: IdempotencyDep,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> RideRead:
    reason = body.reason if body else None
    ride = await rides.cancel_by_rider(session, rider.user_id, ride_id, reason)
    return await rides.rider_view(session, ride)


async def _rider_message(connection: Connection, message: dict[str, Any]) -> None:
    connection.error("unknown_type", f"riders send only `pong`; got {message['type']!r}", message)


@router.websocket("/ws")
async def rider_socket(websocket: WebSocket) -> None:
    await serve(websocket, "rider", _rider_message)
