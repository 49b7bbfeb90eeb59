"""Bulk accounts for load tests: thousands of riders and drivers in seconds.

One argon2 hash is computed once and shared by every seeded account (they all have the same
password), and the rows go in with the accounts repository's bulk inserts (SQLAlchemy batches
them, a thousand rows a statement), so the cost is a few round trips, not one HTTP call and one
hash per user. Emails are deterministic
(`load-rider-{i}@load.coop`, `load-driver-{i}@load.coop`), so seeding again is idempotent and
the load test can log in with the known password.

Rides an earlier run left open for the load accounts are closed through the rides service, as
their users could have closed them, with the events that go with it: a ride under way is
completed by its driver (nobody may cancel a ride in progress, `dispatch/rides/state.py`), any
other is cancelled by its rider (withdrawing its pending offers), or, when only the driver is a
load account, handed back to the queue by the driver.

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

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.models import Role
from dispatch.accounts.repository import AccountRepository
from dispatch.core.database import transaction
from dispatch.core.security import hash_password, issue_access_token
from dispatch.core.settings import Settings
from dispatch.core.state import ProcessState
from dispatch.demo import seed_region_and_policy
from dispatch.rides import service as rides
from dispatch.rides.models import RideStatus
from dispatch.rides.repository import RideRepository

LOAD_PASSWORD = "load-test-password-1"
DEFAULT_CREDENTIALS = Path(__file__).resolve().parent / "results" / "credentials.json"
VEHICLES = (("Toyota", "Prius"), ("Honda", "Accord"), ("Hyundai", "Ioniq"), ("Kia", "Niro"))


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
    session: AsyncSession, role: Role, count: int, password_hash: str
) -> tuple[dict[str, uuid.UUID], int]:
    accounts = AccountRepository(session)
    emails = [load_email(role, i) for i in range(count)]
    created = await accounts.add_users_if_missing(
        [
            {
                "id": uuid.uuid4(),
                "email": email,
                "password_hash": password_hash,
                "name": f"Load {role.capitalize()} {i}",
                "role": role,
            }
            for i, email in enumerate(emails)
        ]
    )
    found = await accounts.ids_by_email(emails)
    if role is Role.driver:
        await accounts.add_drivers_if_missing(
            [
                {
                    "user_id": found[email],
                    "vehicle_make": VEHICLES[i % len(VEHICLES)][0],
                    "vehicle_model": VEHICLES[i % len(VEHICLES)][1],
                    "vehicle_color": "white",
                    "vehicle_plate": f"LD{i:06d}",
                }
                for i, email in enumerate(emails)
            ]
        )
    return {email: found[email] for email in emails}, created


LEFTOVER_REASON = "left open by an earlier load test run"


async def _close_leftover_rides(session: AsyncSession, load_accounts: set[uuid.UUID]) -> int:
    """A run stopped by its clock leaves some rides open; the next run with the same accounts would
    start with riders refused (409 ride_already_open) and drivers busy."""
    leftovers = await RideRepository(session).open_rides_of(load_accounts)
    for ride in leftovers:
        if ride.status is RideStatus.in_progress and ride.driver_id is not None:
            await rides.advance_by_driver(session, ride.driver_id, ride.id, RideStatus.completed)
        elif ride.rider_id in load_accounts:
            await rides.cancel_by_rider(session, ride.rider_id, ride.id, LEFTOVER_REASON)
        elif ride.driver_id is not None:
            await rides.cancel_by_driver(session, ride.driver_id, ride.id, LEFTOVER_REASON)
    return len(leftovers)


def _write_credentials(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


async def seed_load_accounts(
    settings: Settings, riders: int, drivers: int, credentials: Path, token_ttl_s: int
) -> SeedReport:
    """Creates (or finds) the load-test accounts and writes their credentials as JSON."""
    started = time.perf_counter()
    password_hash = hash_password(LOAD_PASSWORD)
    state = ProcessState.open(settings, pool_size=1)
    try:
        async with transaction(state) as session:
            # The load test needs the region and a fare policy, as the demo seeds them.
            await seed_region_and_policy(session, settings.region, settings.currency)
            rider_ids, created_riders = await _seed_role(session, Role.rider, riders, password_hash)
            driver_ids, created_drivers = await _seed_role(
                session, Role.driver, drivers, password_hash
            )
            leftover = await _close_leftover_rides(
                session, {*rider_ids.values(), *driver_ids.values()}
            )
    finally:
        await state.close()

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
        leftover_rides_closed=leftover,
        seconds=time.perf_counter() - started,
        credentials=credentials,
    )
