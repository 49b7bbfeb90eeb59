from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.models import UserAccount
from governance.models import (
    AuditEntry,
    Ballot,
    Choice,
    Member,
    MemberStatus,
    Proposal,
    ProposalStatus,
    RollEntry,
)


class GovernanceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def member(self, user_id: uuid.UUID, *, for_update: bool = False) -> Member | None:
        return await self.session.get(Member, user_id, with_for_update=for_update)

    async def members(self) -> list[tuple[Member, UserAccount]]:
        query = (
            select(Member, UserAccount)
            .join(UserAccount, UserAccount.id == Member.user_id)
            .order_by(Member.admitted_at, Member.user_id)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(query)).all()]

    async def active_member_ids(self) -> list[uuid.UUID]:
        query = (
            select(Member.user_id)
            .where(Member.status == MemberStatus.active)
            .order_by(Member.user_id)
        )
        return list((await self.session.execute(query)).scalars())

    async def proposal(
        self, proposal_id: uuid.UUID, *, lock: str | None = None, skip_locked: bool = False
    ) -> Proposal | None:
        query = select(Proposal).where(Proposal.id == proposal_id)
        if lock == "share":
            query = query.with_for_update(read=True)
        elif lock == "update":
            query = query.with_for_update(skip_locked=skip_locked)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def proposals(self, status: ProposalStatus | None, limit: int) -> list[Proposal]:
        query = select(Proposal).order_by(Proposal.created_at.desc(), Proposal.id).limit(limit)
        if status is not None:
            query = query.where(Proposal.status == status)
        return list((await self.session.execute(query)).scalars())

    async def open_proposal_count(self, author_id: uuid.UUID) -> int:
        query = select(func.count()).where(
            Proposal.author_id == author_id,
            Proposal.status.in_((ProposalStatus.scheduled, ProposalStatus.open)),
        )
        return int((await self.session.execute(query)).scalar_one())

    async def due_to_open(self, now: datetime, limit: int) -> list[uuid.UUID]:
        query = (
            select(Proposal.id)
            .where(Proposal.status == ProposalStatus.scheduled, Proposal.opens_at <= now)
            .order_by(Proposal.opens_at)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    async def due_to_close(self, now: datetime, limit: int) -> list[uuid.UUID]:
        query = (
            select(Proposal.id)
            .where(Proposal.status == ProposalStatus.open, Proposal.closes_at <= now)
            .order_by(Proposal.closes_at, Proposal.id)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    async def roll_entry(self, proposal_id: uuid.UUID, member_id: uuid.UUID) -> RollEntry | None:
        return await self.session.get(RollEntry, (proposal_id, member_id))

    async def roll_member_ids(self, proposal_id: uuid.UUID) -> list[uuid.UUID]:
        query = select(RollEntry.member_id).where(RollEntry.proposal_id == proposal_id)
        return list((await self.session.execute(query)).scalars())

    async def turnouts(self, proposal_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not proposal_ids:
            return {}
        query = (
            select(Ballot.proposal_id, func.count())
            .where(Ballot.proposal_id.in_(proposal_ids))
            .group_by(Ballot.proposal_id)
        )
        return {row[0]: int(row[1]) for row in (await self.session.execute(query)).all()}

    async def ballot(self, proposal_id: uuid.UUID, voter_token: str) -> Ballot | None:
        return await self.session.get(Ballot, (proposal_id, voter_token))

    async def my_votes(
        self, member_id: uuid.UUID, proposal_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        if not proposal_ids:
            return {}
        query = (
            select(Ballot.proposal_id, Ballot.choice)
            .join(
                RollEntry,
                (RollEntry.proposal_id == Ballot.proposal_id)
                & (RollEntry.voter_token == Ballot.voter_token),
            )
            .where(RollEntry.member_id == member_id, Ballot.proposal_id.in_(proposal_ids))
        )
        return {row[0]: row[1].value for row in (await self.session.execute(query)).all()}

    async def upsert_ballot(
        self,
        proposal_id: uuid.UUID,
        voter_token: str,
        choice: Choice,
        salt: str,
        cast_at: datetime,
    ) -> int:
        """Insert or replace the voter's ballot; returns how many times it was revised."""
        values = {
            "proposal_id": proposal_id,
            "voter_token": voter_token,
            "choice": choice,
            "salt": salt,
            "cast_at": cast_at,
            "revisions": 0,
        }
        statement = (
            insert(Ballot)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[Ballot.proposal_id, Ballot.voter_token],
                set_={
                    "choice": choice,
                    "salt": salt,
                    "cast_at": cast_at,
                    "revisions": Ballot.revisions + 1,
                },
            )
            .returning(Ballot.revisions)
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def choices(self, proposal_id: uuid.UUID) -> list[str]:
        query = select(Ballot.choice).where(Ballot.proposal_id == proposal_id)
        return [choice.value for choice in (await self.session.execute(query)).scalars()]

    async def openings(self, proposal_id: uuid.UUID) -> list[tuple[str, str, str]]:
        """(voter token, choice, salt) of every committed ballot, by token."""
        query = (
            select(Ballot.voter_token, Ballot.choice, Ballot.salt)
            .where(Ballot.proposal_id == proposal_id, Ballot.salt.is_not(None))
            .order_by(Ballot.voter_token)
        )
        rows = (await self.session.execute(query)).all()
        return [(row[0], row[1].value, str(row[2])) for row in rows]

    async def lock_audit_log(self, key: int) -> None:
        await self.session.execute(select(func.pg_advisory_xact_lock(key)))

    async def audit_head(self) -> tuple[int, str] | None:
        query = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        row = (await self.session.execute(query)).first()
        return (int(row[0]), str(row[1])) if row else None

    async def outcomes(
        self,
    ) -> list[tuple[uuid.UUID, datetime | None, int | None, int | None, int | None, int | None]]:
        """(id, closed_at, yes, no, abstain, policy_version) of every proposal."""
        query = select(
            Proposal.id,
            Proposal.closed_at,
            Proposal.yes_count,
            Proposal.no_count,
            Proposal.abstain_count,
            Proposal.policy_version,
        ).order_by(Proposal.created_at, Proposal.id)
        rows = (await self.session.execute(query)).all()
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def all_ballots(self) -> list[tuple[uuid.UUID, str, str, str | None]]:
        """(proposal, voter token, choice, salt) of every stored ballot."""
        query = select(Ballot.proposal_id, Ballot.voter_token, Ballot.choice, Ballot.salt)
        rows = (await self.session.execute(query)).all()
        return [(row[0], row[1], row[2].value, row[3]) for row in rows]

    async def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        query = (
            select(AuditEntry)
            .where(AuditEntry.seq > after_seq)
            .order_by(AuditEntry.seq)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    async def undecided_proposal_ids(self, ids: set[uuid.UUID]) -> set[uuid.UUID]:
        """Those of `ids` still scheduled or open (their ballots are sealed until the close)."""
        if not ids:
            return set()
        query = select(Proposal.id).where(
            Proposal.id.in_(ids),
            Proposal.status.in_((ProposalStatus.scheduled, ProposalStatus.open)),
        )
        return set((await self.session.execute(query)).scalars())

    def add(self, item: Member | Proposal | RollEntry) -> None:
        self.session.add(item)
