"""Bulk accounts for load tests: thousands of riders and drivers in seconds.

One argon2 hash is computed once and shared by every seeded account (they all have the same
password), and the rows go in with one multi-row `INSERT ... SELECT unnest(...)` per table, so the
cost is a few round trips, not one HTTP call and one hash per user. Emails are deterministic
(`load-rider-{i}@load.coop`, `load-driver-{i}@load.coop`), so seeding again is idempotent and
the load test can log in with the known password.

The credentials file also carries an access token per account, signed with this deployment's
JWT secret, so a test with thousands of users does not start with thousands of argon2 logins.
Users can still log in for real (`--real-login`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from dispatch.core.database import create_engine, create_sessionmaker
from dispatch.core.security import hash_password, issue_access_token
from dispatch.core.settings import Settings
from dispatch.demo import seed_region_and_policy

LOAD_PASSWORD = "load-test-password-1"
DEFAULT_CREDENTIALS = Path(__file__).resolve().parent / "results" / "credentials.json"
VEHICLES = (("Toyota", "Prius"), ("Honda", "Accord"), ("Hyundai", "Ioniq"), ("Kia", "Niro"))

INSERT_USERS = """
INSERT INTO user_account (id, email, password_hash, name, role)
SELECT u.id, u.email, $3, u.name, $4
FROM unnest($1::uuid[], $2::text[], $5::text[]) AS u(id, email, name)
ON CONFLICT (email) DO NOTHING
"""
SELECT_IDS = "SELECT email, id FROM user_account WHERE email = ANY($1::text[])"
INSERT_DRIVERS = """
INSERT INTO driver (user_id, vehicle_make, vehicle_model, vehicle_color, vehicle_plate)
SELECT d.id, d.make, d.model, 'white', d.plate
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS d(id, make, model, plate)
ON CONFLICT (user_id) DO NOTHING
"""


def load_email(role: str, index: int) -> str:
    return f"load-{role}-{index}@load.coop"


@dataclass(frozen=True)
class SeedReport:
    riders: int
    drivers: int
    created: int
    seconds: float
    credentials: Path
    leftover_rides_closed: int = 0


async def _seed_role(
    connection: asyncpg.Connection, role: str, count: int, password_hash: str
) -> tuple[dict[str, uuid.UUID], int]:
    emails = [load_email(role, i) for i in range(count)]
    names = [f"Load {role.capitalize()} {i}" for i in range(count)]
    ids = [uuid.uuid4() for _ in range(count)]
    status = await connection.execute(INSERT_USERS, ids, emails, password_hash, role, names)
    created = int(status.split()[-1])
    rows = await connection.fetch(SELECT_IDS, emails)
    found = {row["email"]: row["id"] for row in rows}
    if role == "driver":
        vehicles = [VEHICLES[i % len(VEHICLES)] for i in range(count)]
        await connection.execute(
            INSERT_DRIVERS,
            [found[email] for email in emails],
            [make for make, _ in vehicles],
            [model for _, model in vehicles],
            [f"LD{i:06d}" for i in range(count)],
        )
    return {email: found[email] for email in emails}, created


# A run stopped by its clock leaves some rides open; the next run with the same accounts would
# start with riders refused (409 ride_already_open) and drivers busy. Load accounts only.
CLOSE_LEFTOVER_RIDES = """
WITH ended AS (
    UPDATE ride SET status = 'cancelled', ended_at = now(), cancelled_by = 'dispatcher',
        cancel_reason = 'left open by an earlier load test run'
    WHERE status IN ('requested', 'matched', 'arrived', 'in_progress')
      AND (rider_id = ANY($1::uuid[]) OR driver_id = ANY($1::uuid[]))
    RETURNING id
), withdrawn AS (
    UPDATE offer SET status = 'withdrawn', responded_at = now()
    WHERE status = 'pending' AND ride_id IN (SELECT id FROM ended)
)
SELECT count(*) FROM ended
"""


def _write_credentials(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


async def _region_and_policy(settings: Settings) -> None:
    """The load test needs the region and a fare policy, as the demo seeds them."""
    engine = create_engine(settings, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            await seed_region_and_policy(session, settings.region, settings.currency)
            await session.commit()
    finally:
        await engine.dispose()


async def seed_load_accounts(
    settings: Settings, riders: int, drivers: int, credentials: Path, token_ttl_s: int
) -> SeedReport:
    """Creates (or finds) the load-test accounts and writes their credentials as JSON."""
    started = time.perf_counter()
    await _region_and_policy(settings)
    password_hash = hash_password(LOAD_PASSWORD)
    dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            rider_ids, created_riders = await _seed_role(connection, "rider", riders, password_hash)
            driver_ids, created_drivers = await _seed_role(
                connection, "driver", drivers, password_hash
            )
            leftover = await connection.fetchval(
                CLOSE_LEFTOVER_RIDES, [*rider_ids.values(), *driver_ids.values()]
            )
    finally:
        await connection.close()

    token_settings = settings.model_copy(update={"access_token_ttl_s": token_ttl_s})
    expires_at = datetime.now(UTC) + timedelta(seconds=token_ttl_s)

    def accounts(ids: dict[str, uuid.UUID], role: str) -> list[dict[str, Any]]:
        return [
            {
                "id": str(user_id),
                "email": email,
                "token": issue_access_token(token_settings, user_id, role),
            }
            for email, user_id in ids.items()
        ]

    document = {
        "password": LOAD_PASSWORD,
        "tokens_expire_at": expires_at.isoformat(),
        "riders": accounts(rider_ids, "rider"),
        "drivers": accounts(driver_ids, "driver"),
    }
    await asyncio.to_thread(_write_credentials, credentials, document)
    return SeedReport(
        riders=riders,
        drivers=drivers,
        created=created_riders + created_drivers,
        leftover_rides_closed=int(leftover),
        seconds=time.perf_counter() - started,
        credentials=credentials,
    )
