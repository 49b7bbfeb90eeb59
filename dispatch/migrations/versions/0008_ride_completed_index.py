"""ix_ride_completed_ended_at: the dispatcher's day's-earnings aggregate reads only today's rides

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


# CONCURRENTLY, outside the migration's transaction: a plain build locks `ride` against writes
# (every request, accept and completion) for as long as it takes on a large table.
def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_ride_completed_ended_at",
            "ride",
            ["ended_at"],
            postgresql_where=sa.text("status = 'completed'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_ride_completed_ended_at",
            table_name="ride",
            postgresql_concurrently=True,
        )
