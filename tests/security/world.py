"""A small co-op with every role the security suite attacks from, plus what they fight over.

Rider A has a ride matched to driver X; rider B has a ride with a pending offer to driver Y;
`member` drafted an open proposal and voted on it; `suspended` was admitted then suspended;
`operator` runs the co-op. Everything lives in a region of its own so other tests don't see it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

from dispatch.core.clock import utcnow
from dispatch.core.database import transaction
from dispatch.core.redis import RegionKeys
from tests.conftest import Account, make_account, make_operator
from tests.fixtures.dispatching import cycle, offer_for, place, ride_for
from tests.fixtures.regions import Square, create_region

# Tables whose rows a denied request must leave exactly as they were.
GUARDED_TABLES = (
    "user_account",
    "driver",
    "quote",
    "ride",
    "offer",
    "event",
    "fare_policy",
    "member",
    "proposal",
    "roll_entry",
    "ballot",
    "governance_audit",
    "idempotency_key",
)

RIDER_A_PHONE = "+12125550147"  # E.164, as it is stored and shown


@dataclass
class World:
    region: str
    accounts: dict[str, Account | None]
    ride_a: str  # rider A's ride, matched to driver X
    ride_b: str  # rider B's ride, offered to driver Y
    offer_y: str  # driver Y's pending offer for ride B
    proposal: str  # open proposal drafted by `member`
    extra: dict[str, Any] = field(default_factory=dict)

    def headers(self, principal: str) -> dict[str, str]:
        account = self.accounts[principal]
        return account.headers if account is not None else {}

    def id(self, principal: str) -> str:
        account = self.accounts[principal]
        assert account is not None
        return account.id


async def build_world(
    http: httpx.AsyncClient, app: Any, lat0: float = 30.0, lng0: float = 30.0
) -> World:
    settings = app.state.settings
    # Offers stay pending for the whole module, whatever the suite's short offer TTL.
    patient = settings.model_copy(update={"offer_ttl_s": 3600.0})
    region = await create_region(app.state, Square(lat0, lng0), "sec", "Security town")
    center = (lat0 + 0.5, lng0 + 0.5)

    rider_a = await make_account(http, "rider", phone=RIDER_A_PHONE)
    rider_b = await make_account(http, "rider", phone="+12125550199")
    driver_x = await make_account(http, "driver")
    driver_y = await make_account(http, "driver")
    member = await make_account(http, "driver")
    suspended = await make_account(http, "driver")
    operator = await make_operator(http, app)

    for driver in (driver_x, driver_y):
        online = await http.post(
            "/v1/driver/status", json={"status": "online"}, headers=driver.headers
        )
        assert online.status_code == 200, online.text

    # Rider A's ride goes to driver X (the only driver in the region's index).
    await place(app, region, driver_x.id, *center)
    ride_a = await ride_for(http, rider_a, *center)
    await cycle(app, region, patient)
    offer_x = await offer_for(http, driver_x, ride_a)
    accepted = await http.post(
        f"/v1/driver/offers/{offer_x['offer_id']}/accept", headers=driver_x.headers
    )
    assert accepted.status_code == 200, accepted.text

    # Rider B's ride is offered to driver Y (X is busy) and stays pending.
    await place(app, region, driver_y.id, center[0] + 0.01, center[1])
    ride_b = await ride_for(http, rider_b, *center)
    await cycle(app, region, patient)
    offer_y = await offer_for(http, driver_y, ride_b)

    # Governance: one active member with an open proposal and a ballot, one suspended member.
    for account in (member, suspended):
        admitted = await http.post(
            "/v1/governance/members", json={"user_id": account.id}, headers=operator.headers
        )
        assert admitted.status_code == 201, admitted.text
    closes_at = utcnow() + timedelta(seconds=settings.governance_min_voting_s + 3600)
    proposal = await http.post(
        "/v1/governance/proposals",
        json={
            "title": "Lower the booking fee",
            "rationale": "Riders asked",
            "changes": {"booking_fee_cents": 100},
            "closes_at": closes_at.isoformat(),
        },
        headers=member.headers,
    )
    assert proposal.status_code == 201, proposal.text
    proposal_id = proposal.json()["id"]
    vote = await http.post(
        f"/v1/governance/proposals/{proposal_id}/votes",
        json={"choice": "no"},
        headers=member.headers,
    )
    assert vote.status_code == 200, vote.text
    suspend = await http.post(
        f"/v1/governance/members/{suspended.id}/suspend", headers=operator.headers
    )
    assert suspend.status_code == 200, suspend.text

    return World(
        region=region,
        accounts={
            "rider_a": rider_a,
            "rider_b": rider_b,
            "driver_x": driver_x,
            "driver_y": driver_y,
            "member": member,
            "suspended": suspended,
            "operator": operator,
            "anonymous": None,
        },
        ride_a=ride_a,
        ride_b=ride_b,
        offer_y=str(offer_y["offer_id"]),
        proposal=proposal_id,
    )


async def state_fingerprint(app: Any, region: str | None = None) -> dict[str, str]:
    """A digest per guarded table (and the region's driver index): equal means nothing changed."""
    digests: dict[str, str] = {}
    async with transaction(app.state) as session:
        present = set(
            (
                await session.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            )
            .scalars()
            .all()
        )
        for table in (t for t in GUARDED_TABLES if t in present):
            row = await session.execute(
                text(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
                )
            )
            count, digest = row.one()
            digests[table] = f"{count}:{digest}"
    if region is not None:
        keys = RegionKeys(region)
        members = await app.state.redis.zrange(keys.drivers_geo, 0, -1, withscores=True)
        digests["redis:geo"] = hashlib.sha256(repr(members).encode()).hexdigest()
    return digests
