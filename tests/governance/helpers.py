from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from governance import audit
from governance.models import AuditEntry
from governance.tasks import close_due_proposals
from tests.conftest import Account
from tests.e2e.harness import TIMES_SQUARE, WALL_STREET
from tests.governance.conftest import closes_in

DAY = 86_400


async def open_proposal(
    client: httpx.AsyncClient,
    author: Account,
    changes: dict[str, Any],
    window_s: float = DAY,
    **extra: Any,
) -> dict[str, Any]:
    from dispatch.core.clock import utcnow

    body = {
        "title": "A change to vote on",
        "rationale": "Because the members asked.",
        "changes": changes,
        "closes_at": (utcnow() + timedelta(seconds=window_s)).isoformat(),
        **extra,
    }
    created = await client.post("/v1/governance/proposals", json=body, headers=author.headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def vote(
    client: httpx.AsyncClient, member: Account, proposal_id: str, choice: str
) -> httpx.Response:
    return await client.post(
        f"/v1/governance/proposals/{proposal_id}/votes",
        json={"choice": choice},
        headers=member.headers,
    )


async def close(
    app: Any, client: httpx.AsyncClient, viewer: Account, proposal_id: str
) -> dict[str, Any]:
    await close_due_proposals(app.state)
    found = await client.get(f"/v1/governance/proposals/{proposal_id}", headers=viewer.headers)
    return dict(found.json())


async def quote(client: httpx.AsyncClient, rider: Account) -> dict[str, Any]:
    made = await client.post(
        "/v1/rider/quotes",
        json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
        headers=rider.headers,
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


async def policy_version(client: httpx.AsyncClient, version: int) -> dict[str, Any]:
    history = (await client.get("/v1/governance/policies")).json()
    return next(p for p in history if p["version"] == version)


def proposal_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Raise the per-km rate",
        "rationale": "Fuel costs went up.",
        "changes": {"per_km_cents": 130},
        "closes_at": closes_in(2 * DAY),
    }
    body.update(overrides)
    return body


def rehashed(entries: list[AuditEntry], forge: Any) -> list[AuditEntry]:
    """The log as a forger who recomputes every hash would leave it."""
    forged, prev = [], audit.GENESIS_HASH
    for entry in entries:
        payload = forge(entry, dict(entry.payload))
        digest = audit.entry_hash(
            entry.seq, prev, entry.type, entry.proposal_id, payload, entry.created_at
        )
        forged.append(
            AuditEntry(
                seq=entry.seq,
                type=entry.type,
                proposal_id=entry.proposal_id,
                payload=payload,
                created_at=entry.created_at,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    return forged


# The sealed-ballot attack: what a reader of the open log would try on every hash.
CHOICES = ("yes", "no", "abstain")


def _digests(text: str) -> set[str]:
    raw = text.encode()
    return {hashlib.new(name, raw).hexdigest() for name in ("sha256", "sha1", "md5", "blake2b")}


def guesses(entry: dict[str, Any], choice: str) -> set[str]:
    """Every digest an attacker would try for one choice: the entry re-hashed with the choice put
    back (in place of any field, or added), and plain hashes of the choice with each visible value
    before or after it."""
    payload = dict(entry["payload"])
    created_at = datetime.fromisoformat(entry["created_at"]).astimezone(UTC)
    payloads = [{**payload, "choice": choice}]
    payloads += [{**payload, key: choice} for key in payload]
    payloads += [
        {k: v for k, v in payload.items() if k != key} | {"choice": choice} for key in payload
    ]
    found = {
        audit.entry_hash(
            entry["seq"], entry["prev_hash"], entry["type"], entry["proposal_id"], p, created_at
        )
        for p in payloads
    }
    visible = [str(v) for v in payload.values()] + [entry["proposal_id"], entry["prev_hash"], ""]
    for value, separator in itertools.product(visible, ("", ":", "|", " ")):
        found |= _digests(f"{value}{separator}{choice}") | _digests(f"{choice}{separator}{value}")
    found |= _digests(json.dumps({**payload, "choice": choice}, sort_keys=True))
    return found


def hash_fields(entry: dict[str, Any]) -> set[str]:
    values = {entry["hash"], entry["prev_hash"]}
    values |= {str(v) for v in entry["payload"].values() if isinstance(v, str)}
    return values
