from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from dispatch.core.geo import LatLng


class QuoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pickup: LatLng
    dropoff: LatLng


class QuoteRead(BaseModel):
    id: uuid.UUID
    pickup: LatLng
    dropoff: LatLng
    total_cents: int
    driver_cents: int
    coop_cents: int
    currency: str
    breakdown: dict[str, int]
    policy_version: int
    distance_m: int
    duration_s: int
    created_at: datetime
    expires_at: datetime


class PolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    base_cents: int
    per_km_cents: int
    per_minute_cents: int
    minimum_cents: int
    booking_fee_cents: int
    commission_rate: float
    commission_cap_cents: int
    currency: str
    effective_at: datetime
    proposal_id: uuid.UUID | None
