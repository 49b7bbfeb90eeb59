from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, WebSocket
from pydantic import BaseModel, ConfigDict
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts import service as accounts
from dispatch.accounts.dependencies import CurrentDriver, SettingsDep
from dispatch.accounts.repository import AccountRepository
from dispatch.core.database import SessionDep, transaction
from dispatch.core.errors import Conflict, CoopError, Forbidden, NotFound, Unauthorized, responses
from dispatch.core.params import IsoDatetime
from dispatch.core.redis import RegionKeys
from dispatch.core.settings import Settings
from dispatch.dispatcher import presence
from dispatch.dispatcher.plausibility import DETAILS as POSITION_REFUSALS
from dispatch.dispatcher.plausibility import PositionGate, Refusal
from dispatch.dispatcher.presence import LocationIndex, Written
from dispatch.events.outbox import publish_ephemeral
from dispatch.idempotency.dependencies import IdempotencyDep, IdempotentRoute
from dispatch.realtime.connection import Connection, serve
from dispatch.rides import service as rides
from dispatch.rides.models import ACTIVE_STATUSES, Ride, RideStatus
from dispatch.rides.repository import RideRepository
from dispatch.rides.schemas import DriverCancelRequest, DriverRideRead, Earnings, OfferRead
from dispatch.state import AppState, AppStateDep

router = APIRouter(prefix="/v1/driver", tags=["driver"], route_class=IdempotentRoute)


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["online", "offline"]


class DriverStatus(BaseModel):
    status: Literal["online", "offline"]
    active_ride_id: uuid.UUID | None


async def _change_status(
    session: AsyncSession, index: LocationIndex, driver_id: uuid.UUID, online: bool, gate: Any
) -> DriverStatus:
    if online and gate is not None:
        await gate(session, driver_id)
    await accounts.set_driver_online(session, driver_id, online)
    if not online:
        await index.remove(driver_id)
    active = await RideRepository(session).active_ride_of_driver(driver_id)
    return DriverStatus(
        status="online" if online else "offline", active_ride_id=active.id if active else None
    )


@router.post("/status", responses=responses(Unauthorized, Forbidden))
async def set_status(
    body: StatusChange, driver: CurrentDriver, session: SessionDep, state: AppStateDep
) -> DriverStatus:
    return await _change_status(
        session, state.location_index, driver.user_id, body.status == "online", state.driving_gate
    )


@router.get("/offers/current", responses=responses(Unauthorized))
async def current_offer(driver: CurrentDriver, session: SessionDep) -> OfferRead | None:
    repository = RideRepository(session)
    offer = await repository.pending_offer_of_driver(driver.user_id)
    if offer is None:
        return None
    ride = await repository.ride(offer.ride_id)
    assert ride is not None
    return rides.offer_view(offer, ride)


@router.post("/offers/{offer_id}/accept", responses=responses(Unauthorized, NotFound, Conflict))
async def accept_offer(
    offer_id: uuid.UUID, driver: CurrentDriver, session: SessionDep, _: IdempotencyDep
) -> DriverRideRead:
    ride = await rides.accept_offer(session, driver.user_id, offer_id)
    return await rides.driver_view(session, ride)


@router.post("/offers/{offer_id}/decline", responses=responses(Unauthorized, NotFound, Conflict))
async def decline_offer(
    offer_id: uuid.UUID, driver: CurrentDriver, session: SessionDep, _: IdempotencyDep
) -> OfferRead:
    offer = await rides.decline_offer(session, driver.user_id, offer_id)
    ride = await RideRepository(session).ride(offer.ride_id)
    assert ride is not None
    return rides.offer_view(offer, ride)


@router.get("/rides", responses=responses(Unauthorized))
async def list_rides(
    driver: CurrentDriver,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: IsoDatetime | None = None,
) -> list[DriverRideRead]:
    statuses = [RideStatus.completed, RideStatus.cancelled, *ACTIVE_STATUSES]
    found = await RideRepository(session).rides_of_driver(driver.user_id, statuses, limit, before)
    return await rides.driver_views(session, found)


@router.get("/rides/current", responses=responses(Unauthorized))
async def current_ride(driver: CurrentDriver, session: SessionDep) -> DriverRideRead | None:
    ride = await RideRepository(session).active_ride_of_driver(driver.user_id)
    return await rides.driver_view(session, ride) if ride else None


@router.get("/rides/{ride_id}", responses=responses(Unauthorized, NotFound))
async def get_ride(
    ride_id: uuid.UUID, driver: CurrentDriver, session: SessionDep
) -> DriverRideRead:
    return await rides.driver_view(
        session, await rides.driver_ride(session, driver.user_id, ride_id)
    )


POSITION_LOOKUP_TIMEOUT_S = 0.5


def _completion_check(state: AppState) -> rides.CompletionCheck:
    async def locate_driver(ride: Ride) -> tuple[float, float] | None:
        assert ride.driver_id is not None
        lookup = presence.position_of(state.redis, RegionKeys(ride.region_id), ride.driver_id)
        try:
            return await asyncio.wait_for(lookup, POSITION_LOOKUP_TIMEOUT_S)
        except (RedisError, TimeoutError):
            # Flagged as unknown: a completion holds the ride's row lock, and never waits on
            # Redis for longer than this.
            return None

    settings: Settings = state.settings
    return rides.CompletionCheck(
        locate_driver=locate_driver,
        max_distance_m=settings.completion_max_distance_m,
        max_speed_mps=settings.location_max_speed_mps,
    )


def _advance_route(target: RideStatus) -> Any:
    async def advance(
        ride_id: uuid.UUID,
        driver: CurrentDriver,
        session: SessionDep,
        state: AppStateDep,
        _: IdempotencyDep,
    ) -> DriverRideRead:
        check = _completion_check(state) if target is RideStatus.completed else None
        ride = await rides.advance_by_driver(session, driver.user_id, ride_id, target, check)
        return await rides.driver_view(session, ride)

    return advance


for _action, _target in (
    ("arrive", RideStatus.arrived),
    ("start", RideStatus.in_progress),
    ("complete", RideStatus.completed),
):
    router.add_api_route(
        f"/rides/{{ride_id}}/{_action}",
        _advance_route(_target),
        methods=["POST"],
        response_model=DriverRideRead,
        responses=responses(Unauthorized, NotFound, Conflict),
        name=f"{_action}_ride",
        summary=f"{_action.capitalize()} the ride",
    )


@router.post("/rides/{ride_id}/cancel", responses=responses(Unauthorized, NotFound, Conflict))
async def cancel_ride(
    ride_id: uuid.UUID,
    body: DriverCancelRequest,
    driver: CurrentDriver,
    session: SessionDep,
    _: IdempotencyDep,
) -> DriverRideRead:
    ride = await rides.cancel_by_driver(session, driver.user_id, ride_id, body.reason)
    return await rides.driver_view(session, ride)


@router.get("/earnings", responses=responses(Unauthorized))
async def earnings(
    driver: CurrentDriver,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: IsoDatetime | None = None,
) -> Earnings:
    return await rides.earnings(session, driver.user_id, limit, before, settings.currency)


# --- WebSocket -----------------------------------------------------------------------------


async def _on_open(connection: Connection) -> None:
    state = connection.app_state
    async with transaction(state) as session:
        driver = await AccountRepository(session).driver(connection.user_id)
        ride = await RideRepository(session).active_ride_of_driver(connection.user_id)
        connection.state["online"] = bool(driver and driver.is_online)
        if ride is not None:
            connection.state["ride"] = (ride.id, ride.rider_id)
        offer = await RideRepository(session).pending_offer_of_driver(connection.user_id)
        pending = None
        if offer is not None:
            offered_ride = await RideRepository(session).ride(offer.ride_id)
            assert offered_ride is not None
            pending = rides.offer_view(offer, offered_ride).model_dump(mode="json")
    connection.send(
        {
            "type": "status",
            "status": "online" if connection.state["online"] else "offline",
            "active_ride_id": str(ride.id) if ride else None,
            "pending_offer": pending,
        }
    )


def _on_event(connection: Connection, message: dict[str, Any]) -> None:
    kind = message.get("type")
    if kind == "ride.assigned":
        connection.state["ride"] = (message.get("ride_id"), message.get("rider_id"))
    elif kind in ("ride.completed", "ride.cancelled"):
        connection.state.pop("ride", None)


async def _location(connection: Connection, message: dict[str, Any]) -> None:
    state = connection.app_state
    gate: PositionGate = state.position_gate
    point = await gate.check(connection.member, message.get("lat"), message.get("lng"))
    if isinstance(point, Refusal):
        connection.error(point.value, POSITION_REFUSALS[point], message)
        return
    if not connection.state.get("online"):
        connection.error("offline", "go online before streaming positions", message)
        return
    # The ack goes out from the write that indexes the position: the read loop does not wait.
    if "id" in message:
        state.location_index.update(
            connection.member, point[0], point[1], _acknowledge, (connection, message["id"])
        )
    else:
        state.location_index.update(connection.member, point[0], point[1])
    ride = connection.state.get("ride")
    if ride is not None and ride[1] is not None:
        await publish_ephemeral(
            state.redis,
            state.settings.region,
            ride[1],
            {"type": "driver.location", "ride_id": str(ride[0]), "lat": point[0], "lng": point[1]},
        )


def _acknowledge(request: tuple[Connection, Any], written: Written) -> None:
    connection, message_id = request
    if written is Written.indexed:
        connection.send({"type": "location.ack", "id": message_id})
    elif written is Written.refused:
        connection.error(
            "bad_coordinates",
            "the geo index refused this position",
            {"type": "location", "id": message_id},
        )
    else:
        connection.error(
            "retry",
            "a backing service failed; send it again",
            {"type": "location", "id": message_id},
        )


async def _status(connection: Connection, message: dict[str, Any]) -> None:
    status = message.get("status")
    if status not in ("online", "offline"):
        connection.error("bad_message", "status must be online or offline", message)
        return
    state = connection.app_state
    async with transaction(state) as session:
        result = await _change_status(
            session,
            state.location_index,
            connection.user_id,
            status == "online",
            state.driving_gate,
        )
    connection.state["online"] = status == "online"
    connection.send({"type": "status", **result.model_dump(mode="json")})


def _offer_id(connection: Connection, message: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(message.get("offer_id")))
    except ValueError:
        connection.error("bad_message", "offer_id must be a UUID", message)
        return None


async def _accept(connection: Connection, message: dict[str, Any]) -> None:
    offer_id = _offer_id(connection, message)
    if offer_id is None:
        return
    async with transaction(connection.app_state) as session:
        ride = await rides.accept_offer(session, connection.user_id, offer_id)
        view = (await rides.driver_view(session, ride)).model_dump(mode="json")
    connection.state["ride"] = (ride.id, ride.rider_id)
    connection.send({"type": "accepted", "offer_id": str(offer_id), "ride": view})


async def _decline(connection: Connection, message: dict[str, Any]) -> None:
    offer_id = _offer_id(connection, message)
    if offer_id is None:
        return
    async with transaction(connection.app_state) as session:
        await rides.decline_offer(session, connection.user_id, offer_id)
    connection.send({"type": "declined", "offer_id": str(offer_id)})


DRIVER_MESSAGES = {"location": _location, "status": _status, "accept": _accept, "decline": _decline}


async def _driver_message(connection: Connection, message: dict[str, Any]) -> None:
    handler = DRIVER_MESSAGES.get(message["type"])
    if handler is None:
        connection.error("unknown_type", f"unknown message type {message['type']!r}", message)
        return
    try:
        await handler(connection, message)
    except CoopError as error:
        connection.error(error.code, error.message, message)


@router.websocket("/ws")
async def driver_socket(websocket: WebSocket) -> None:
    await serve(websocket, "driver", _driver_message, on_open=_on_open, on_event=_on_event)
