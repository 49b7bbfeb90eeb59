"""one open ride per rider, decided by PostgreSQL (concurrent requests raced the check)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OPEN = "status IN ('requested', 'matched', 'arrived', 'in_progress')"


def upgrade() -> None:
    doubled = op.get_bind().scalar(
        sa.text(
            "SELECT count(*) FROM (SELECT rider_id FROM ride "
            "WHERE status IN ('requested', 'matched', 'arrived', 'in_progress') "
            "GROUP BY rider_id HAVING count(*) > 1) AS doubled"
        )
    )
    if doubled:
        raise RuntimeError(
            f"{doubled} riders hold more than one open ride; cancel the extra rides "
            "(coop-dispatch has no way to choose which one the rider meant) and migrate again"
        )
    op.create_index(
        "uq_ride_rider_open",
        "ride",
        ["rider_id"],
        unique=True,
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_ride_rider_open", table_name="ride", postgresql_where=sa.text(OPEN))
