from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dispatch.accounts.schemas import Vehicle
from dispatch.core.geo import LatLng
from dispatch.core.text import MultilineText

# A reason is shown to the other side of the ride: no terminal escapes or bidi overrides.
Reason = MultilineText


class RideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quote_id: uuid.UUID


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = Field(default=None, max_length=500)


class DriverCancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(min_length=1, max_length=500)


class Fare(BaseModel):
    total_cents: int
    driver_cents: int
    coop_cents: int
    currency: str
    policy_version: int


class Receipt(BaseModel):
    ride_id: uuid.UUID
    total_cents: int
    driver_cents: int
    coop_cents: int
    currency: str
    breakdown: dict[str, int]
    policy_version: int
    proposal_id: uuid.UUID | None
    distance_m: int
    duration_s: int
    completed_at: datetime


class AssignedDriver(BaseModel):
    id: uuid.UUID
    name: str
    vehicle: Vehicle | None


class RideRead(BaseModel):
    id: uuid.UUID
    status: str
    pickup: LatLng
    dropoff: LatLng
    fare: Fare
    distance_m: int
    duration_s: int
    driver: AssignedDriver | None = None
    pickup_eta_s: int | None = None
    requested_at: datetime
    matched_at: datetime | None = None
    arrived_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    receipt: Receipt | None = None


class RiderContact(BaseModel):
    name: str
    phone: str | None


class DriverRideRead(BaseModel):
    id: uuid.UUID
    status: str
    pickup: LatLng
    dropoff: LatLng
    driver_cents: int
    coop_cents: int
    total_cents: int
    currency: str
    pickup_eta_s: int | None
    rider: RiderContact | None
    matched_at: datetime | None
    ended_at: datetime | None


class FlaggedRide(BaseModel):
    """A completed ride whose completion looked wrong, for operators to review."""

    id: uuid.UUID
    region_id: str
    driver_id: uuid.UUID | None
    rider_id: uuid.UUID
    dropoff: LatLng
    distance_m: int
    total_cents: int
    currency: str
    started_at: datetime | None
    ended_at: datetime | None
    completion_flags: list[dict[str, Any]]


class OfferRead(BaseModel):
    offer_id: uuid.UUID
    ride_id: uuid.UUID
    status: str
    pickup: LatLng
    dropoff: LatLng
    driver_cents: int
    currency: str
    pickup_eta_s: int
    expires_at: datetime


class EarningsLine(BaseModel):
    ride_id: uuid.UUID
    completed_at: datetime
    gross_cents: int
    coop_commission_cents: int
    net_cents: int
    currency: str
    policy_version: int


class Earnings(BaseModel):
    rides: list[EarningsLine]
    total_gross_cents: int
    total_coop_commission_cents: int
    total_net_cents: int
    currency: str
