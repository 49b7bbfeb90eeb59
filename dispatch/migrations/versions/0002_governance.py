"""governance: members, proposals, roll, ballots, hash-chained audit log

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _status(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16, create_constraint=True)


def upgrade() -> None:
    op.create_table(
        "member",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", _status("member_status", "active", "suspended"), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["driver.user_id"],
            name=op.f("fk_member_user_id_driver"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_member")),
    )
    op.create_table(
        "proposal",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("quorum", sa.String(length=20), nullable=False),
        sa.Column("threshold", sa.String(length=20), nullable=False),
        sa.Column(
            "status",
            _status("proposal_status", "scheduled", "open", "passed", "rejected", "failed_quorum"),
            nullable=False,
        ),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("roll_size", sa.Integer(), nullable=True),
        sa.Column("yes_count", sa.Integer(), nullable=True),
        sa.Column("no_count", sa.Integer(), nullable=True),
        sa.Column("abstain_count", sa.Integer(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["member.user_id"], name=op.f("fk_proposal_author_id_member")
        ),
        sa.ForeignKeyConstraint(
            ["policy_version"],
            ["fare_policy.version"],
            name=op.f("fk_proposal_policy_version_fare_policy"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposal")),
    )
    op.create_index(op.f("ix_proposal_author_id"), "proposal", ["author_id"], unique=False)
    op.create_index(
        "ix_proposal_due",
        "proposal",
        ["status", "closes_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('scheduled', 'open')"),
    )
    op.create_table(
        "roll_entry",
        sa.Column("proposal_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("voter_token", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.user_id"], name=op.f("fk_roll_entry_member_id_member")
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposal.id"],
            name=op.f("fk_roll_entry_proposal_id_proposal"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("proposal_id", "member_id", name=op.f("pk_roll_entry")),
        sa.UniqueConstraint("proposal_id", "voter_token", name="uq_roll_entry_voter_token"),
    )
    op.create_table(
        "ballot",
        sa.Column("proposal_id", sa.Uuid(), nullable=False),
        sa.Column("voter_token", sa.String(length=32), nullable=False),
        sa.Column("choice", _status("ballot_choice", "yes", "no", "abstain"), nullable=False),
        sa.Column("cast_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revisions", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id", "voter_token"],
            ["roll_entry.proposal_id", "roll_entry.voter_token"],
            name="fk_ballot_roll_entry",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("proposal_id", "voter_token", name=op.f("pk_ballot")),
    )
    op.create_table(
        "governance_audit",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("proposal_id", sa.Uuid(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_governance_audit")),
        sa.UniqueConstraint("hash", name=op.f("uq_governance_audit_hash")),
    )
    op.create_index(
        op.f("ix_governance_audit_proposal_id"), "governance_audit", ["proposal_id"], unique=False
    )
    # Append-only for the application; the hash chain catches whoever bypasses this.
    op.execute(
        "CREATE FUNCTION governance_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'governance_audit is append-only'; END $$"
    )
    op.execute(
        "CREATE TRIGGER governance_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
        "ON governance_audit FOR EACH STATEMENT EXECUTE FUNCTION governance_audit_append_only()"
    )
    op.create_foreign_key(
        op.f("fk_fare_policy_proposal_id_proposal"),
        "fare_policy",
        "proposal",
        ["proposal_id"],
        ["id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_fare_policy_proposal_id_proposal"), "fare_policy", type_="foreignkey"
    )
    op.execute("DROP TRIGGER governance_audit_append_only ON governance_audit")
    op.execute("DROP FUNCTION governance_audit_append_only()")
    op.drop_index(op.f("ix_governance_audit_proposal_id"), table_name="governance_audit")
    op.drop_table("governance_audit")
    op.drop_table("ballot")
    op.drop_table("roll_entry")
    op.drop_index("ix_proposal_due", table_name="proposal")
    op.drop_index(op.f("ix_proposal_author_id"), table_name="proposal")
    op.drop_table("proposal")
    op.drop_table("member")
