"""ballot.salt: the secret half of a sealed ballot's commitment, published when voting closes

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for ballots cast before commitments: their choice is in the log itself.
    op.add_column("ballot", sa.Column("salt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("ballot", "salt")
