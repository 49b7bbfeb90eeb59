"""core schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "event",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("ride_id", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    op.create_index("ix_event_user_id_id", "event", ["user_id", "id"], unique=False)
    op.create_table(
        "fare_policy",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("base_cents", sa.Integer(), nullable=False),
        sa.Column("per_km_cents", sa.Integer(), nullable=False),
        sa.Column("per_minute_cents", sa.Integer(), nullable=False),
        sa.Column("minimum_cents", sa.Integer(), nullable=False),
        sa.Column("booking_fee_cents", sa.Integer(), nullable=False),
        sa.Column("commission_rate", sa.Numeric(precision=6, scale=4), nullable=False),
        sa.Column("commission_cap_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("proposal_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "base_cents >= 0 AND per_km_cents >= 0 AND per_minute_cents >= 0",
            name=op.f("ck_fare_policy_rates"),
        ),
        sa.CheckConstraint("commission_cap_cents >= 0", name=op.f("ck_fare_policy_commission_cap")),
        sa.CheckConstraint(
            "commission_rate >= 0 AND commission_rate <= 1",
            name=op.f("ck_fare_policy_commission_rate"),
        ),
        sa.CheckConstraint(
            "minimum_cents >= 0 AND booking_fee_cents >= 0", name=op.f("ck_fare_policy_fees")
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_fare_policy")),
    )
    op.create_index(
        op.f("ix_fare_policy_effective_at"), "fare_policy", ["effective_at"], unique=False
    )
    op.create_geospatial_table(
        "region",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column(
            "area",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_region")),
    )
    op.create_geospatial_index(
        "idx_region_area",
        "region",
        ["area"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_table(
        "user_account",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column(
            "role",
            sa.Enum("rider", "driver", "operator", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("email", name=op.f("uq_user_account_email")),
    )
    op.create_table(
        "driver",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("vehicle_make", sa.String(length=60), nullable=True),
        sa.Column("vehicle_model", sa.String(length=60), nullable=True),
        sa.Column("vehicle_color", sa.String(length=30), nullable=True),
        sa.Column("vehicle_plate", sa.String(length=20), nullable=True),
        sa.Column("is_online", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "status_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_driver_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_driver")),
    )
    op.create_geospatial_table(
        "quote",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("rider_id", sa.Uuid(), nullable=False),
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("pickup_lat", sa.Float(), nullable=False),
        sa.Column("pickup_lng", sa.Float(), nullable=False),
        sa.Column("dropoff_lat", sa.Float(), nullable=False),
        sa.Column("dropoff_lng", sa.Float(), nullable=False),
        sa.Column(
            "pickup",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            sa.Computed(
                "(ST_SetSRID(ST_MakePoint(pickup_lng, pickup_lat), 4326))::geography",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "dropoff",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            sa.Computed(
                "(ST_SetSRID(ST_MakePoint(dropoff_lng, dropoff_lat), 4326))::geography",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column("distance_m", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=False),
        sa.Column("driver_cents", sa.Integer(), nullable=False),
        sa.Column("coop_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("breakdown", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_version"],
            ["fare_policy.version"],
            name=op.f("fk_quote_policy_version_fare_policy"),
        ),
        sa.ForeignKeyConstraint(
            ["region_id"], ["region.id"], name=op.f("fk_quote_region_id_region")
        ),
        sa.ForeignKeyConstraint(
            ["rider_id"], ["user_account.id"], name=op.f("fk_quote_rider_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quote")),
    )
    op.create_index(op.f("ix_quote_rider_id"), "quote", ["rider_id"], unique=False)
    op.create_geospatial_table(
        "ride",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("rider_id", sa.Uuid(), nullable=False),
        sa.Column("driver_id", sa.Uuid(), nullable=True),
        sa.Column("quote_id", sa.Uuid(), nullable=False),
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "requested",
                "matched",
                "arrived",
                "in_progress",
                "completed",
                "cancelled",
                "unfulfilled",
                name="ride_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("pickup_lat", sa.Float(), nullable=False),
        sa.Column("pickup_lng", sa.Float(), nullable=False),
        sa.Column("dropoff_lat", sa.Float(), nullable=False),
        sa.Column("dropoff_lng", sa.Float(), nullable=False),
        sa.Column(
            "pickup",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            sa.Computed(
                "(ST_SetSRID(ST_MakePoint(pickup_lng, pickup_lat), 4326))::geography",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "dropoff",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            sa.Computed(
                "(ST_SetSRID(ST_MakePoint(dropoff_lng, dropoff_lat), 4326))::geography",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column("distance_m", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=False),
        sa.Column("driver_cents", sa.Integer(), nullable=False),
        sa.Column("coop_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("pickup_eta_s", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=16), nullable=True),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["driver_id"], ["driver.user_id"], name=op.f("fk_ride_driver_id_driver")
        ),
        sa.ForeignKeyConstraint(
            ["policy_version"],
            ["fare_policy.version"],
            name=op.f("fk_ride_policy_version_fare_policy"),
        ),
        sa.ForeignKeyConstraint(["quote_id"], ["quote.id"], name=op.f("fk_ride_quote_id_quote")),
        sa.ForeignKeyConstraint(
            ["region_id"], ["region.id"], name=op.f("fk_ride_region_id_region")
        ),
        sa.ForeignKeyConstraint(
            ["rider_id"], ["user_account.id"], name=op.f("fk_ride_rider_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ride")),
        sa.UniqueConstraint("quote_id", name=op.f("uq_ride_quote_id")),
        sa.UniqueConstraint("rider_id", "idempotency_key", name="uq_ride_rider_idempotency_key"),
    )
    op.create_geospatial_index(
        "idx_ride_pickup",
        "ride",
        ["pickup"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(op.f("ix_ride_driver_id"), "ride", ["driver_id"], unique=False)
    op.create_index(
        "ix_ride_open",
        "ride",
        ["region_id", "requested_at"],
        unique=False,
        postgresql_where=sa.text("status = 'requested'"),
    )
    op.create_index(op.f("ix_ride_rider_id"), "ride", ["rider_id"], unique=False)
    op.create_index(
        "uq_ride_driver_active",
        "ride",
        ["driver_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('matched', 'arrived', 'in_progress')"),
    )
    op.create_table(
        "offer",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ride_id", sa.Uuid(), nullable=False),
        sa.Column("driver_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "accepted",
                "declined",
                "expired",
                "withdrawn",
                name="offer_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("eta_s", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["driver_id"], ["driver.user_id"], name=op.f("fk_offer_driver_id_driver")
        ),
        sa.ForeignKeyConstraint(
            ["ride_id"], ["ride.id"], name=op.f("fk_offer_ride_id_ride"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offer")),
    )
    op.create_index(op.f("ix_offer_driver_id"), "offer", ["driver_id"], unique=False)
    op.create_index(op.f("ix_offer_ride_id"), "offer", ["ride_id"], unique=False)
    op.create_index(
        "uq_offer_driver_pending",
        "offer",
        ["driver_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "uq_offer_ride_pending",
        "offer",
        ["ride_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_offer_ride_pending", table_name="offer", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_index(
        "uq_offer_driver_pending",
        table_name="offer",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(op.f("ix_offer_ride_id"), table_name="offer")
    op.drop_index(op.f("ix_offer_driver_id"), table_name="offer")
    op.drop_table("offer")
    op.drop_index(
        "uq_ride_driver_active",
        table_name="ride",
        postgresql_where=sa.text("status IN ('matched', 'arrived', 'in_progress')"),
    )
    op.drop_index(op.f("ix_ride_rider_id"), table_name="ride")
    op.drop_index(
        "ix_ride_open", table_name="ride", postgresql_where=sa.text("status = 'requested'")
    )
    op.drop_index(op.f("ix_ride_driver_id"), table_name="ride")
    op.drop_geospatial_index(
        "idx_ride_pickup", table_name="ride", postgresql_using="gist", column_name="pickup"
    )
    op.drop_geospatial_table("ride")
    op.drop_index(op.f("ix_quote_rider_id"), table_name="quote")
    op.drop_geospatial_table("quote")
    op.drop_table("driver")
    op.drop_table("user_account")
    op.drop_geospatial_index(
        "idx_region_area", table_name="region", postgresql_using="gist", column_name="area"
    )
    op.drop_geospatial_table("region")
    op.drop_index(op.f("ix_fare_policy_effective_at"), table_name="fare_policy")
    op.drop_table("fare_policy")
    op.drop_index("ix_event_user_id_id", table_name="event")
    op.drop_table("event")
