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
    # Without the salts no sealed ballot can be opened: an open proposal could never close with
    # its ballots revealed, and `governance verify` would fail on every commitment for good.
    bind = op.get_bind()
    salted = bind.scalar(sa.text("SELECT count(*) FROM ballot WHERE salt IS NOT NULL"))
    committed = bind.scalar(
        sa.text("SELECT count(*) FROM governance_audit WHERE payload ? 'commitment'")
    )
    if salted or committed:
        raise RuntimeError(
            f"refusing to drop ballot.salt: {salted} salted ballots and {committed} audit entries "
            "with a commitment need it (sealed ballots could never be opened and `governance "
            "verify` would fail); this downgrade is only for a database with no sealed ballot"
        )
    op.drop_column("ballot", "salt")
