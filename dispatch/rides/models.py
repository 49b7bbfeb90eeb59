from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.core.database import Base
from dispatch.fares.models import PricedTrip


class RideStatus(enum.StrEnum):
    requested = "requested"
    matched = "matched"
    arrived = "arrived"
    in_progress = "in_progress"
    completed = "completed"
    cancelled = "cancelled"
    unfulfilled = "unfulfilled"


ACTIVE_STATUSES = (RideStatus.matched, RideStatus.arrived, RideStatus.in_progress)
OPEN_STATUSES = (RideStatus.requested, *ACTIVE_STATUSES)
TERMINAL_STATUSES = (RideStatus.completed, RideStatus.cancelled, RideStatus.unfulfilled)
RIDER_OPEN_INDEX = "uq_ride_rider_open"


class OfferStatus(enum.StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    withdrawn = "withdrawn"


def _status_enum(enum_type: type[enum.StrEnum], name: str) -> Enum:
    return Enum(enum_type, name=name, native_enum=False, length=16, create_constraint=True)


class Ride(PricedTrip, Base):
    __tablename__ = "ride"
    pickup_spatial_index = True
    __table_args__ = (
        # PostgreSQL, not Redis, decides: a driver holds at most one active ride.
        Index(
            "uq_ride_driver_active",
            "driver_id",
            unique=True,
            postgresql_where=text("status IN ('matched', 'arrived', 'in_progress')"),
        ),
        # And a rider holds at most one open ride, however many requests race for it.
        Index(
            RIDER_OPEN_INDEX,
            "rider_id",
            unique=True,
            postgresql_where=text("status IN ('requested', 'matched', 'arrived', 'in_progress')"),
        ),
        Index(
            "ix_ride_open",
            "region_id",
            "requested_at",
            postgresql_where=text("status = 'requested'"),
        ),
        # The dispatcher's day's-earnings aggregate (fairness) reads only today's completions.
        Index(
            "ix_ride_completed_ended_at",
            "ended_at",
            postgresql_where=text("status = 'completed'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    rider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    driver_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("driver.user_id"), index=True)
    quote_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quote.id"), unique=True)
    region_id: Mapped[str] = mapped_column(ForeignKey("region.id"))
    status: Mapped[RideStatus] = mapped_column(_status_enum(RideStatus, "ride_status"))
    pickup_eta_s: Mapped[int | None] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    matched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    arrived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    # What looked wrong when the driver completed (far from the dropoff, too soon): for operators,
    # never a refusal (GPS fails in tunnels). `[{"flag": ..., ...figures}]`.
    completion_flags: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb"), default=list
    )


class Offer(Base):
    __tablename__ = "offer"
    __table_args__ = (
        # One pending offer per ride and per driver, whatever any dispatcher believes.
        Index(
            "uq_offer_ride_pending",
            "ride_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "uq_offer_driver_pending",
            "driver_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ride_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ride.id", ondelete="CASCADE"), index=True
    )
    driver_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("driver.user_id"), index=True)
    status: Mapped[OfferStatus] = mapped_column(_status_enum(OfferStatus, "offer_status"))
    eta_s: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
