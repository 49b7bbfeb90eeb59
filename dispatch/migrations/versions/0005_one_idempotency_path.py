"""ride requests keep one idempotency path: the generic `idempotency_key` table

The `ride.idempotency_key` column compared only the quote; the generic key (method, path and the
whole body, with the saved answer) already covers ride requests.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("uq_ride_rider_idempotency_key", "ride", type_="unique")
    op.drop_column("ride", "idempotency_key")


def downgrade() -> None:
    op.add_column("ride", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.create_unique_constraint(
        "uq_ride_rider_idempotency_key", "ride", ["rider_id", "idempotency_key"]
    )
