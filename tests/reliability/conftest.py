"""Helpers for the reliability suite: an isolated region per test, drivers placed by hand."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from dispatch.core import clock
from dispatch.core.database import transaction
from dispatch.core.redis import RegionKeys
from dispatch.dispatcher.cycle import CycleReport, run_cycle
from dispatch.dispatcher.presence import LocationIndex
from tests.conftest import Account, make_account
from tests.governance.conftest import make_members, operator  # noqa: F401 - fixtures for votes

CENTER = (10.5, 10.5)
AREA = "MULTIPOLYGON(((10 10, 11 10, 11 11, 10 11, 10 10)))"
RETIRED = "MULTIPOLYGON(((-60 -60, -59.9 -60, -59.9 -59.9, -60 -60)))"


async def retire_regions_over(session: Any, area: str) -> None:
    """A test whose teardown could not run leaves its region over the shared test area:
    retire it, so quotes there land in the new test's region."""
    await session.execute(
        text(
            "UPDATE region SET area = ST_GeomFromText(:retired, 4326) "
            "WHERE ST_Intersects(area, ST_GeomFromText(:area, 4326))"
        ),
        {"area": area, "retired": RETIRED},
    )


@pytest.fixture
async def region(app: Any) -> AsyncIterator[str]:
    region_id = f"r-{uuid.uuid4().hex[:8]}"
    async with transaction(app.state) as session:
        await retire_regions_over(session, AREA)
        await session.execute(
            text(
                "INSERT INTO region (id, name, timezone, area) "
                "VALUES (:id, 'Reliability town', 'UTC', ST_GeomFromText(:area, 4326))"
            ),
            {"id": region_id, "area": AREA},
        )
    yield region_id
    clock.reset()
    async with transaction(app.state) as session:
        # Regions cannot be deleted under their rides; retire the area so the next one is unique.
        await session.execute(
            text("UPDATE region SET area = ST_GeomFromText(:area, 4326) WHERE id = :id"),
            {"id": region_id, "area": RETIRED},
        )


async def place(app: Any, region: str, driver_id: str, lat: float, lng: float) -> None:
    await place_many(app, region, {driver_id: (lat, lng)})


async def place_many(app: Any, region: str, positions: dict[str, tuple[float, float]]) -> None:
    """Index drivers' positions as their apps' location messages would (one GEOADD)."""
    index = LocationIndex(app.state.redis, RegionKeys(region), 0.01)
    for driver_id, (lat, lng) in positions.items():
        index.update(uuid.UUID(driver_id), lat, lng)
    await index.flush()


async def online_driver(
    client: httpx.AsyncClient, app: Any, region: str, lat: float, lng: float
) -> Account:
    driver = await make_account(client, "driver")
    online = await client.post(
        "/v1/driver/status", json={"status": "online"}, headers=driver.headers
    )
    assert online.status_code == 200, online.text
    await place(app, region, driver.id, lat, lng)
    return driver


async def quote_for(
    client: httpx.AsyncClient, rider: Account, lat: float = CENTER[0], lng: float = CENTER[1]
) -> str:
    body = {"pickup": {"lat": lat, "lng": lng}, "dropoff": {"lat": lat + 0.03, "lng": lng + 0.03}}
    quote = await client.post("/v1/rider/quotes", json=body, headers=rider.headers)
    assert quote.status_code == 201, quote.text
    return str(quote.json()["id"])


async def request_ride(
    client: httpx.AsyncClient, lat: float = CENTER[0], lng: float = CENTER[1]
) -> tuple[Account, str]:
    rider = await make_account(client, "rider")
    quote_id = await quote_for(client, rider, lat, lng)
    ride = await client.post("/v1/rider/rides", json={"quote_id": quote_id}, headers=rider.headers)
    assert ride.status_code == 201, ride.text
    return rider, str(ride.json()["id"])


async def cycle(app: Any, region: str) -> CycleReport:
    return await run_cycle(app.state, region, app.state.settings, app.state.eta)


async def current_offer(client: httpx.AsyncClient, driver: Account) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (
        await client.get("/v1/driver/offers/current", headers=driver.headers)
    ).json()
    return found


_PASSWORD_HASH: list[str] = []


async def bulk_accounts(app: Any, role: str, count: int) -> list[Account]:
    """Many accounts at once, straight into the tables (argon2 per account would dominate)."""
    from dispatch.accounts.models import Driver, Role, UserAccount
    from dispatch.core.security import hash_password, issue_access_token

    if not _PASSWORD_HASH:
        _PASSWORD_HASH.append(hash_password("not-used-for-login"))
    settings = app.state.settings
    accounts = []
    ids = [uuid.uuid4() for _ in range(count)]
    async with transaction(app.state) as session:
        session.add_all(
            UserAccount(
                id=user_id,
                email=f"{role}-{user_id.hex}@bulk.coop",
                password_hash=_PASSWORD_HASH[0],
                name=f"Bulk {role}",
                role=Role(role),
            )
            for user_id in ids
        )
        await session.flush()
        if role == "driver":
            session.add_all(
                Driver(user_id=user_id, vehicle_plate="BULK", is_online=True) for user_id in ids
            )
    # Tokens carry real time even when a test has moved the app's clock (PyJWT checks real time).
    moved = clock._offset
    clock.reset()
    try:
        for user_id in ids:
            token = issue_access_token(settings, user_id, role)
            accounts.append(Account(str(user_id), f"{user_id}@bulk", token, role))
    finally:
        clock.advance(moved)
    return accounts


FIGURES_DIR = Path(__file__).resolve().parents[2] / ".local" / "reliability"


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Keep each test's last figures (docs/reliability.md quotes them) and print them."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"\n[figures] {name}: {json.dumps(figures, default=str)}")
