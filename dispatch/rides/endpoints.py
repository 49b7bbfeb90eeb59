"""Operators' view of rides: completions that looked wrong (far from the dropoff, too soon)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dispatch.accounts.dependencies import CurrentOperator
from dispatch.core.database import SessionDep
from dispatch.core.errors import Forbidden, Unauthorized, responses
from dispatch.core.geo import LatLng
from dispatch.core.params import IsoDatetime
from dispatch.rides.repository import RideRepository
from dispatch.rides.schemas import FlaggedRide

router = APIRouter(prefix="/v1/operator", tags=["operator"])


@router.get("/rides/flagged", responses=responses(Unauthorized, Forbidden))
async def flagged_rides(
    operator: CurrentOperator,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: IsoDatetime | None = None,
) -> list[FlaggedRide]:
    """Completed rides with completion flags, newest first; page with `before=<ended_at>`."""
    rides = await RideRepository(session).flagged_rides(limit, before)
    return [
        FlaggedRide(
            id=ride.id,
            region_id=ride.region_id,
            driver_id=ride.driver_id,
            rider_id=ride.rider_id,
            dropoff=LatLng(lat=ride.dropoff_lat, lng=ride.dropoff_lng),
            distance_m=ride.distance_m,
            total_cents=ride.total_cents,
            currency=ride.currency,
            started_at=ride.started_at,
            ended_at=ride.ended_at,
            completion_flags=ride.completion_flags,
        )
        for ride in rides
    ]
