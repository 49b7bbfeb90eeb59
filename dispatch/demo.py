"""The demo co-op: New York City, a first fare policy, a few riders and driver-members."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from geoalchemy2 import WKTElement
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.models import Driver, Role, UserAccount
from dispatch.accounts.repository import AccountRepository
from dispatch.core.security import hash_password
from dispatch.fares.models import FarePolicy, Region
from dispatch.fares.repository import FareRepository

# NYC's five boroughs, as a generous outline of their bounding box (lat 40.48-40.92).
NYC_AREA_WKT = (
    "MULTIPOLYGON(((-74.2591 40.4774, -73.7004 40.4774, -73.7004 40.9176, "
    "-74.2591 40.9176, -74.2591 40.4774)))"
)
DEMO_PASSWORD = "demo-password-1"

INITIAL_POLICY: dict[str, Any] = {
    "base_cents": 250,
    "per_km_cents": 120,
    "per_minute_cents": 35,
    "minimum_cents": 800,
    "booking_fee_cents": 150,
    "commission_rate": Decimal("0.1000"),
    "commission_cap_cents": 500,
}

DEMO_DRIVERS = [
    ("Ana Souza", "ana@demo.coop", ("Toyota", "Prius", "silver", "T123456C")),
    ("Kwame Mensah", "kwame@demo.coop", ("Honda", "Accord", "black", "T234567C")),
    ("Li Wei", "li@demo.coop", ("Hyundai", "Ioniq", "white", "T345678C")),
    ("Maria Lopez", "maria@demo.coop", ("Toyota", "Camry", "blue", "T456789C")),
    ("Sam Okafor", "sam@demo.coop", ("Kia", "Niro", "grey", "T567890C")),
]
DEMO_RIDERS = [("Riley Rider", "rider@demo.coop"), ("Jordan Park", "jordan@demo.coop")]


@dataclass(frozen=True)
class DemoLogin:
    role: str
    name: str
    email: str
    password: str


async def seed_region_and_policy(session: AsyncSession, region_id: str, currency: str) -> None:
    fares = FareRepository(session)
    if await fares.region(region_id) is None:
        fares.add(
            Region(
                id=region_id,
                name="New York City",
                timezone="America/New_York",
                area=WKTElement(NYC_AREA_WKT, srid=4326),
            )
        )
    if await fares.policy(1) is None:
        fares.add(
            FarePolicy(
                version=1,
                currency=currency,
                effective_at=datetime(2000, 1, 1, tzinfo=UTC),
                **INITIAL_POLICY,
            )
        )
    await session.flush()


async def seed_demo(session: AsyncSession, region_id: str, currency: str) -> list[DemoLogin]:
    await seed_region_and_policy(session, region_id, currency)
    accounts = AccountRepository(session)
    password_hash = hash_password(DEMO_PASSWORD)
    logins = []
    for name, email, (make, model, color, plate) in DEMO_DRIVERS:
        user = await _user(accounts, email, name, Role.driver, password_hash)
        if await accounts.driver(user.id) is None:
            accounts.add(
                Driver(
                    user_id=user.id,
                    vehicle_make=make,
                    vehicle_model=model,
                    vehicle_color=color,
                    vehicle_plate=plate,
                )
            )
        logins.append(DemoLogin("driver", name, email, DEMO_PASSWORD))
    for name, email in DEMO_RIDERS:
        await _user(accounts, email, name, Role.rider, password_hash)
        logins.append(DemoLogin("rider", name, email, DEMO_PASSWORD))
    await session.flush()
    return logins


async def _user(
    accounts: AccountRepository, email: str, name: str, role: Role, password_hash: str
) -> UserAccount:
    user = await accounts.by_email(email)
    if user is None:
        user = UserAccount(
            id=uuid.uuid4(), email=email, name=name, role=role, password_hash=password_hash
        )
        accounts.add(user)
        await accounts.session.flush()
    return user
