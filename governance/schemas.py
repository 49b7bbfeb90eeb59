from __future__ import annotations

import math
import re
import unicodedata
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

from dispatch.core.params import AwareIsoDatetime
from dispatch.core.text import DisplayText, display_text, held_to_limits

CENTS = Field(default=None, ge=0, le=10_000_000)
# A rate as written by a person: digits and at most one point; no sign, exponent or spaces.
RATE_TEXT = re.compile(r"\d+(\.\d+)?|\.\d+")


class PolicyChanges(BaseModel):
    """Any subset of the fare policy's fields; those left out keep their value. Strict: a
    boolean or a string is not a number of cents, and "-0" is not a rate."""

    model_config = ConfigDict(extra="forbid")

    base_cents: StrictInt | None = CENTS
    per_km_cents: StrictInt | None = CENTS
    per_minute_cents: StrictInt | None = CENTS
    minimum_cents: StrictInt | None = CENTS
    booking_fee_cents: StrictInt | None = CENTS
    commission_rate: Decimal | None = Field(
        default=None, ge=0, le=1, max_digits=5, decimal_places=4, allow_inf_nan=False
    )
    commission_cap_cents: StrictInt | None = CENTS

    @field_validator("commission_rate", mode="before")
    @classmethod
    def _plain_rate(cls, value: object) -> object:
        if value is None or (isinstance(value, Decimal) and not value.is_signed()):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("commission_rate must be a number or a decimal string")
        if isinstance(value, str) and not RATE_TEXT.fullmatch(value):
            raise ValueError('commission_rate must be written like "0.08" (no sign or exponent)')
        if isinstance(value, float) and math.copysign(1.0, value) < 0:
            raise ValueError("commission_rate must not be negative")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> PolicyChanges:
        if not self.model_dump(exclude_none=True):
            raise ValueError("a proposal must change at least one field")
        return self


def _paragraphs(value: str) -> str:
    """Like a name (no controls, bidi overrides or blank), but line breaks stay."""
    text = unicodedata.normalize("NFKC", value).strip().replace("\r\n", "\n")
    display_text(text.replace("\n", " ").replace("\t", " "))
    return text


Paragraphs = Annotated[str, held_to_limits(_paragraphs)]


class ProposalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Shown to every member, in the app and in the proposal.opened notice.
    title: DisplayText = Field(min_length=3, max_length=200)
    rationale: Paragraphs = Field(min_length=1, max_length=10_000)
    changes: PolicyChanges
    # ISO 8601 with a timezone; a number is not taken as a Unix timestamp.
    closes_at: AwareIsoDatetime
    opens_at: AwareIsoDatetime | None = None
    effective_at: AwareIsoDatetime | None = None


class VoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    choice: Literal["yes", "no", "abstain"]


class VoteRead(BaseModel):
    proposal_id: uuid.UUID
    choice: str
    cast_at: datetime
    changed: bool


class TallyRead(BaseModel):
    yes: int
    no: int
    abstain: int


class ProposalRead(BaseModel):
    id: uuid.UUID
    title: str
    rationale: str
    author_id: uuid.UUID
    changes: dict[str, int | str]
    status: Literal["scheduled", "open", "passed", "rejected", "failed_quorum"]
    opens_at: datetime
    closes_at: datetime
    effective_at: datetime | None = Field(
        description="the requested effective time, or once enacted the time the policy applies"
    )
    quorum: str
    threshold: str
    roll_size: int | None
    turnout: int
    tally: TallyRead | None = Field(description="published at close; null while voting is open")
    closed_at: datetime | None
    policy_version: int | None = Field(description="the fare policy version it enacted")
    my_vote: Literal["yes", "no", "abstain"] | None = Field(
        default=None, description="the caller's own current vote; never anyone else's"
    )


class FigureSet(BaseModel):
    rides: int
    average_fare_cents: int
    total_fare_cents: int
    driver_earnings_cents: int
    median_driver_earnings_cents: int
    coop_revenue_cents: int


class ImpactRead(BaseModel):
    proposal_id: uuid.UUID
    window_start: datetime
    window_end: datetime
    drivers: int
    base_policy_version: int
    suppressed: bool = Field(
        default=False,
        description="true when fewer drivers than the bylaw min_impact_drivers (but some) drove "
        "in the window: the figures would show individual drivers' pay, so they are withheld",
    )
    before: FigureSet | None = Field(
        description="the rides re-priced under the latest policy; null when suppressed"
    )
    after: FigureSet | None = Field(
        description="the same rides under the proposed policy; null when suppressed"
    )


class BylawsRead(BaseModel):
    quorum: str
    fare_threshold: str
    commission_threshold: str
    tie_passes: bool = False
    min_voting_s: int
    max_voting_s: int
    max_schedule_ahead_s: int = Field(description="how far ahead opens_at may be")
    max_effective_delay_s: int = Field(description="how long after closes_at effective_at may be")
    max_open_proposals_per_member: int = Field(
        description="scheduled or open proposals one member may have drafted at a time"
    )
    min_impact_drivers: int = Field(
        description="impact previews show per-driver figures only for at least this many drivers"
    )
    hard_limits: dict[str, int | str]


class MemberAdmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID


class MemberRead(BaseModel):
    user_id: uuid.UUID
    name: str
    email: str
    status: Literal["active", "suspended"]
    admitted_at: datetime
    status_changed_at: datetime


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    type: str
    proposal_id: uuid.UUID | None
    payload: dict[str, object]
    created_at: datetime
    prev_hash: str
    hash: str
    sealed: bool = Field(
        default=False,
        description="a ballot of a proposal still open: it carries only a salted commitment to "
        "its choice, opened by the proposal's ballots.revealed entry at the close",
    )
