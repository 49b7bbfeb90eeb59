from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from geoalchemy2 import Geography, Geometry
from sqlalchemy import (
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from dispatch.core.database import Base


def point_from(lat_column: str, lng_column: str) -> Computed:
    return Computed(
        f"(ST_SetSRID(ST_MakePoint({lng_column}, {lat_column}), 4326))::geography", persisted=True
    )


class Region(Base):
    __tablename__ = "region"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    area: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True))


class FarePolicy(Base):
    __tablename__ = "fare_policy"
    __table_args__ = (
        CheckConstraint(
            "base_cents >= 0 AND per_km_cents >= 0 AND per_minute_cents >= 0", name="rates"
        ),
        CheckConstraint("minimum_cents >= 0 AND booking_fee_cents >= 0", name="fees"),
        CheckConstraint("commission_rate >= 0 AND commission_rate <= 1", name="commission_rate"),
        CheckConstraint("commission_cap_cents >= 0", name="commission_cap"),
    )

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    base_cents: Mapped[int] = mapped_column(Integer)
    per_km_cents: Mapped[int] = mapped_column(Integer)
    per_minute_cents: Mapped[int] = mapped_column(Integer)
    minimum_cents: Mapped[int] = mapped_column(Integer)
    booking_fee_cents: Mapped[int] = mapped_column(Integer)
    commission_rate: Mapped[Decimal] = mapped_column(Numeric(6, 4))
    commission_cap_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    proposal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("proposal.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PricedTrip:
    """Where from, where to, and the locked price: shared by a quote and the ride made from it."""

    pickup_spatial_index = False

    pickup_lat: Mapped[float] = mapped_column(Float)
    pickup_lng: Mapped[float] = mapped_column(Float)
    dropoff_lat: Mapped[float] = mapped_column(Float)
    dropoff_lng: Mapped[float] = mapped_column(Float)
    distance_m: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[int] = mapped_column(Integer)
    total_cents: Mapped[int] = mapped_column(Integer)
    driver_cents: Mapped[int] = mapped_column(Integer)
    coop_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    policy_version: Mapped[int] = mapped_column(ForeignKey("fare_policy.version"))

    @declared_attr
    def pickup(cls) -> Mapped[Any]:
        return mapped_column(
            Geography("POINT", srid=4326, spatial_index=cls.pickup_spatial_index),
            point_from("pickup_lat", "pickup_lng"),
        )

    @declared_attr
    def dropoff(cls) -> Mapped[Any]:
        return mapped_column(
            Geography("POINT", srid=4326, spatial_index=False),
            point_from("dropoff_lat", "dropoff_lng"),
        )


class Quote(PricedTrip, Base):
    __tablename__ = "quote"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    rider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    region_id: Mapped[str] = mapped_column(ForeignKey("region.id"))
    breakdown: Mapped[dict[str, int]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
