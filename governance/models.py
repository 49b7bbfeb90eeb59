from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.core.database import Base


def _enum(enum_type: type[enum.StrEnum], name: str) -> Enum:
    return Enum(enum_type, name=name, native_enum=False, length=16, create_constraint=True)


class MemberStatus(enum.StrEnum):
    active = "active"
    suspended = "suspended"


class ProposalStatus(enum.StrEnum):
    scheduled = "scheduled"
    open = "open"
    passed = "passed"
    rejected = "rejected"
    failed_quorum = "failed_quorum"


class Choice(enum.StrEnum):
    yes = "yes"
    no = "no"
    abstain = "abstain"


class Member(Base):
    __tablename__ = "member"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("driver.user_id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[MemberStatus] = mapped_column(_enum(MemberStatus, "member_status"))
    admitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Proposal(Base):
    __tablename__ = "proposal"
    __table_args__ = (
        Index(
            "ix_proposal_due",
            "status",
            "closes_at",
            postgresql_where=text("status IN ('scheduled', 'open')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member.user_id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    rationale: Mapped[str] = mapped_column(Text)
    # Field name -> new value; cents as int, commission_rate as a decimal string.
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)
    quorum: Mapped[str] = mapped_column(String(20))
    threshold: Mapped[str] = mapped_column(String(20))
    status: Mapped[ProposalStatus] = mapped_column(_enum(ProposalStatus, "proposal_status"))
    opens_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    effective_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    roll_size: Mapped[int | None] = mapped_column(Integer)
    yes_count: Mapped[int | None] = mapped_column(Integer)
    no_count: Mapped[int | None] = mapped_column(Integer)
    abstain_count: Mapped[int | None] = mapped_column(Integer)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    policy_version: Mapped[int | None] = mapped_column(ForeignKey("fare_policy.version"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RollEntry(Base):
    """The voter roll, fixed when voting opens; the token is what ballots and the log carry."""

    __tablename__ = "roll_entry"
    __table_args__ = (
        UniqueConstraint("proposal_id", "voter_token", name="uq_roll_entry_voter_token"),
    )

    proposal_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("proposal.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member.user_id"), primary_key=True)
    voter_token: Mapped[str] = mapped_column(String(32))


class Ballot(Base):
    """The latest choice of one voter; keyed by the roll token, not by member."""

    __tablename__ = "ballot"
    __table_args__ = (
        ForeignKeyConstraint(
            ["proposal_id", "voter_token"],
            ["roll_entry.proposal_id", "roll_entry.voter_token"],
            name="fk_ballot_roll_entry",
            ondelete="CASCADE",
        ),
    )

    proposal_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    voter_token: Mapped[str] = mapped_column(String(32), primary_key=True)
    choice: Mapped[Choice] = mapped_column(_enum(Choice, "ballot_choice"))
    # Random; the log carries sha256(salt || choice) until the close reveals both.
    salt: Mapped[str | None] = mapped_column(String(64))
    cast_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revisions: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntry(Base):
    """Append-only, hash-chained record of every governance event."""

    __tablename__ = "governance_audit"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(40))
    proposal_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
