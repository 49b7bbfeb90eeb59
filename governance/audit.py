"""The hash-chained governance log, and its verifier.

Each entry's hash covers its sequence number, the previous entry's hash, its type, proposal,
payload and time, so an edit, a deletion or a reordering breaks the chain from that entry on.
`verify` also replays every proposal from the log alone: who may vote (the roll tokens logged at
opening), the last ballot of each token inside the window, the tally, the outcome and the policy
it enacted.

A ballot is logged as a commitment, sha256(salt || choice) with a fresh 256-bit salt, never as
its choice: with three possible choices, anything computed from the choice alone (the entry's
own hash included) would let a reader of the open log try each one. The close publishes each
counted ballot's salt and choice (`ballots.revealed`), so the recount needs nothing but the log.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.clock import utcnow
from governance.models import AuditEntry
from governance.repository import GovernanceRepository
from governance.rules import Tally, decide, parse_fraction

GENESIS_HASH = "0" * 64
# One lock serialises appends, so the chain never forks under concurrent writers.
AUDIT_LOCK_KEY = zlib.crc32(b"coop-dispatch:governance-audit") & 0x7FFFFFFF


SALT_BYTES = 32
CHOICES = ("yes", "no", "abstain")


def new_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


def commitment(salt: str, choice: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + choice.encode()).hexdigest()


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    seq: int,
    prev_hash: str,
    type: str,
    proposal_id: uuid.UUID | None,
    payload: dict[str, Any],
    created_at: datetime,
) -> str:
    document = {
        "seq": seq,
        "prev_hash": prev_hash,
        "type": type,
        "proposal_id": str(proposal_id) if proposal_id else None,
        "payload": payload,
        "created_at": timestamp(created_at),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def append(
    session: AsyncSession,
    type: str,
    payload: dict[str, Any],
    proposal_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append in the caller's transaction; the lock is held until it commits."""
    repository = GovernanceRepository(session)
    await repository.lock_audit_log(AUDIT_LOCK_KEY)
    head = await repository.audit_head()
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
    created_at = at or utcnow()
    entry = AuditEntry(
        seq=seq,
        type=type,
        proposal_id=proposal_id,
        payload=payload,
        created_at=created_at,
        prev_hash=prev_hash,
        hash=entry_hash(seq, prev_hash, type, proposal_id, payload, created_at),
    )
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True)
class Finding:
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"audit entry #{self.seq}: {self.problem}"


@dataclass
class Report:
    entries: int = 0
    proposals_checked: int = 0
    head_hash: str = GENESIS_HASH
    finding: Finding | None = None

    @property
    def ok(self) -> bool:
        return self.finding is None


@dataclass
class _Replay:
    roll: set[str]
    quorum: str
    threshold: str
    opens_at: str
    closes_at: str
    changes: dict[str, Any]
    # Each token's last ballot: its choice (logged in the clear before commitments, or revealed),
    # and its commitment while sealed.
    ballots: dict[str, str] = field(default_factory=dict)
    commitments: dict[str, str] = field(default_factory=dict)
    revealed: bool = False
    status: str | None = None
    tally: Tally | None = None
    policy_version: int | None = None


class _Bad(Exception):
    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(problem)
        self.finding = Finding(seq, problem)


async def entries(session: AsyncSession, batch: int = 1000) -> list[AuditEntry]:
    repository = GovernanceRepository(session)
    rows: list[AuditEntry] = []
    while page := await repository.audit_entries(rows[-1].seq if rows else 0, batch):
        rows.extend(page)
    return rows


async def verify(session: AsyncSession) -> Report:
    """Check the log, then that the tables agree with it (which catches a cut-off tail)."""
    report = Report()
    try:
        drafted, proposals = _replay(await entries(session), report)
        await _cross_check(session, report, drafted, proposals)
    except _Bad as bad:
        report.finding = bad.finding
    return report


def verify_entries(log: Iterable[AuditEntry]) -> Report:
    report = Report()
    try:
        _replay(log, report)
    except _Bad as bad:
        report.finding = bad.finding
    return report


async def _cross_check(
    session: AsyncSession,
    report: Report,
    drafted: dict[str, dict[str, Any]],
    proposals: dict[str, _Replay],
) -> None:
    after = report.entries + 1

    def missing(problem: str) -> _Bad:
        return _Bad(after, f"missing from the log (entries lost at the end?): {problem}")

    repository = GovernanceRepository(session)
    for proposal_id, closed_at, yes, no, abstain, version in await repository.outcomes():
        key = str(proposal_id)
        replay = proposals.get(key)
        if key not in drafted:
            raise missing(f"proposal {key} was never drafted")
        if closed_at is not None and (replay is None or replay.tally is None):
            raise missing(f"proposal {key} is closed but its close is not logged")
        if replay is not None and replay.tally is not None:
            logged = (replay.tally.yes, replay.tally.no, replay.tally.abstain)
            if closed_at is None or logged != (yes, no, abstain):
                raise missing(f"proposal {key}'s stored tally differs from the logged one")
        if version is not None and (replay is None or replay.policy_version != version):
            raise missing(f"policy version {version} enacted by proposal {key}")
    # A sealed ballot is checked against its commitment, a revealed or legacy one by its choice.
    ballots: dict[str, dict[str, str]] = {}
    for proposal_id, token, choice, salt in await repository.all_ballots():
        replay = proposals.get(str(proposal_id))
        sealed = salt is not None and (replay is None or not replay.revealed)
        ballots.setdefault(str(proposal_id), {})[token] = (
            commitment(salt, choice) if sealed and salt is not None else choice
        )
    for key in ballots.keys() - proposals.keys():
        raise missing(f"ballots of proposal {key}, which never opened in the log")
    for key, replay in proposals.items():
        last = replay.ballots if replay.revealed else replay.ballots | replay.commitments
        if ballots.get(key, {}) != last:
            raise missing(f"the ballots of proposal {key} differ from the logged ones")


def _replay(
    log: Iterable[AuditEntry], report: Report
) -> tuple[dict[str, dict[str, Any]], dict[str, _Replay]]:
    expected_seq, prev_hash = 1, GENESIS_HASH
    drafted: dict[str, dict[str, Any]] = {}
    proposals: dict[str, _Replay] = {}
    last_version = 0
    for entry in log:
        seq = entry.seq
        if seq != expected_seq:
            raise _Bad(
                expected_seq if seq > expected_seq else seq,
                f"expected #{expected_seq}, found #{seq}",
            )
        if entry.prev_hash != prev_hash:
            raise _Bad(seq, "does not follow the previous entry (chain broken)")
        recomputed = entry_hash(
            seq, entry.prev_hash, entry.type, entry.proposal_id, entry.payload, entry.created_at
        )
        if recomputed != entry.hash:
            raise _Bad(seq, "contents do not match its hash (edited)")
        key = str(entry.proposal_id) if entry.proposal_id else ""
        payload = entry.payload
        if entry.type == "proposal.drafted":
            drafted[key] = payload
        elif entry.type == "proposal.opened":
            draft = drafted.get(key)
            if draft is None or key in proposals:
                raise _Bad(seq, "opens a proposal that was not drafted, or opens it twice")
            proposals[key] = _Replay(
                roll=set(payload["roll"]),
                quorum=draft["quorum"],
                threshold=draft["threshold"],
                opens_at=draft["opens_at"],
                closes_at=draft["closes_at"],
                changes=draft["changes"],
            )
        elif entry.type == "ballot.cast":
            replay = _open(proposals, key, seq)
            token, cast_at = payload["voter"], payload["cast_at"]
            if token not in replay.roll:
                raise _Bad(seq, "ballot from a voter who is not on the roll")
            if not replay.opens_at <= cast_at < replay.closes_at:
                raise _Bad(seq, "ballot cast outside the voting window")
            if replay.revealed:
                raise _Bad(seq, "ballot cast after the ballots were revealed")
            if "commitment" in payload:
                replay.commitments[token] = payload["commitment"]
                replay.ballots.pop(token, None)
            else:
                replay.ballots[token] = payload["choice"]
                replay.commitments.pop(token, None)
        elif entry.type == "ballots.revealed":
            replay = _open(proposals, key, seq)
            if replay.revealed:
                raise _Bad(seq, "reveals the ballots twice")
            for opening in payload["ballots"]:
                token, choice = opening["voter"], opening["choice"]
                sealed = replay.commitments.get(token)
                if sealed is None or token in replay.ballots:
                    raise _Bad(seq, "reveals a ballot that was not cast")
                if choice not in CHOICES or not _opens(opening["salt"], choice, sealed):
                    raise _Bad(seq, f"revealed ballot of {token} does not match its commitment")
                replay.ballots[token] = choice
            if unopened := replay.commitments.keys() - replay.ballots.keys():
                raise _Bad(seq, f"{len(unopened)} sealed ballot(s) never revealed")
            replay.revealed = True
        elif entry.type == "proposal.closed":
            replay = _open(proposals, key, seq)
            if replay.commitments and not replay.revealed:
                raise _Bad(seq, f"{len(replay.commitments)} sealed ballot(s) never revealed")
            tally = Tally.of(replay.ballots.values(), len(replay.roll))
            status = decide(tally, parse_fraction(replay.quorum), parse_fraction(replay.threshold))
            logged = {k: payload.get(k) for k in ("yes", "no", "abstain", "roll_size", "status")}
            recomputed_tally = {**tally.as_dict(), "status": status}
            if logged != {k: recomputed_tally[k] for k in logged}:
                raise _Bad(
                    seq, f"published tally {logged} differs from the ballots {recomputed_tally}"
                )
            replay.status, replay.tally = status, tally
            report.proposals_checked += 1
        elif entry.type == "policy.enacted":
            replay_or_none = proposals.get(key)
            if replay_or_none is None or replay_or_none.status != "passed":
                raise _Bad(seq, "enacts a proposal that did not pass")
            policy = payload["policy"]
            if any(policy.get(name) != value for name, value in replay_or_none.changes.items()):
                raise _Bad(seq, "enacted policy does not carry the proposal's changes")
            if payload["version"] <= last_version:
                raise _Bad(seq, "policy versions out of order")
            last_version = payload["version"]
            replay_or_none.status = "enacted"
            replay_or_none.policy_version = last_version
        report.entries += 1
        prev_hash = entry.hash
        expected_seq = seq + 1
    report.head_hash = prev_hash
    return drafted, proposals


def _opens(salt: str, choice: str, sealed: str) -> bool:
    try:
        return commitment(salt, choice) == sealed
    except (TypeError, ValueError):  # not hex
        return False


def _open(proposals: dict[str, _Replay], key: str, seq: int) -> _Replay:
    replay = proposals.get(key)
    if replay is None or replay.status is not None:
        raise _Bad(seq, "refers to a proposal that is not open")
    return replay
