"""The real-cycle benchmark's world, written in bulk (COPY: thousands of rows a statement).

The tests' large batch seeds with it too. Raw asyncpg: these are data loads of a scratch database,
not the application's statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg


async def recreate_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


class WorldRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add_region(self, region: str, area_wkt: str) -> int:
        """The region, and the fare policy version its rides are priced under."""
        await self.conn.execute(
            "INSERT INTO region (id, name, timezone, area) "
            "VALUES ($1, $1, 'UTC', ST_GeomFromText($2, 4326)) ON CONFLICT DO NOTHING",
            region,
            area_wkt,
        )
        version = await self.conn.fetchval("SELECT max(version) FROM fare_policy")
        if version is None:
            version = 1
            await self.conn.execute(
                "INSERT INTO fare_policy (version, base_cents, per_km_cents, per_minute_cents, "
                "minimum_cents, booking_fee_cents, commission_rate, commission_cap_cents, "
                "currency, effective_at) VALUES (1, 250, 120, 30, 700, 0, 0.1, 500, 'USD', now())"
            )
        return int(version)

    async def _accounts(self, role: str, n: int) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(n)]
        await self.conn.copy_records_to_table(
            "user_account",
            columns=["id", "email", "password_hash", "name", "role"],
            records=[
                (i, f"{role}-{i}@bench.invalid", "-", f"{role} {i.hex[:6]}", role) for i in ids
            ],
        )
        return ids

    async def add_drivers(self, n: int) -> list[uuid.UUID]:
        """`n` online driver accounts."""
        ids = await self._accounts("driver", n)
        await self.conn.copy_records_to_table(
            "driver", columns=["user_id", "is_online"], records=[(i, True) for i in ids]
        )
        return ids

    async def add_requests(
        self,
        region: str,
        policy_version: int,
        lat: Sequence[float],
        lng: Sequence[float],
        requested_at: datetime,
    ) -> list[uuid.UUID]:
        """One rider, quote and `requested` ride per pickup (dropoff 1 km north, $12.50)."""
        riders = await self._accounts("rider", len(lat))
        quotes = [uuid.uuid4() for _ in riders]
        rides = [uuid.uuid4() for _ in riders]
        trip = [
            (la, ln, la + 0.009, ln, 1200, 300, 1250, 1125, 125, "USD", policy_version)
            for la, ln in zip(lat, lng, strict=True)
        ]
        priced = [
            "pickup_lat", "pickup_lng", "dropoff_lat", "dropoff_lng", "distance_m", "duration_s",
            "total_cents", "driver_cents", "coop_cents", "currency", "policy_version",
        ]  # fmt: skip
        expires = requested_at + timedelta(minutes=5)
        await self.conn.copy_records_to_table(
            "quote",
            columns=[
                "id",
                "rider_id",
                "region_id",
                "breakdown",
                "created_at",
                "expires_at",
                *priced,
            ],
            records=[
                (q, r, region, "{}", requested_at, expires, *t)
                for q, r, t in zip(quotes, riders, trip, strict=True)
            ],
        )
        await self.conn.copy_records_to_table(
            "ride",
            columns=["id", "rider_id", "quote_id", "region_id", "status", "requested_at", *priced],
            records=[
                (i, r, q, region, "requested", requested_at, *t)
                for i, r, q, t in zip(rides, riders, quotes, trip, strict=True)
            ],
        )
        return rides

    async def analyze(self) -> None:
        await self.conn.execute("ANALYZE")

    async def reset_batch(
        self, ride_ids: Sequence[uuid.UUID], waited: Sequence[timedelta], at: datetime
    ) -> None:
        """Back to before the last cycle: no offers, no offer events, each request waiting
        `waited` at `at`."""
        await self.conn.execute("DELETE FROM event WHERE type = 'offer'")
        await self.conn.execute("DELETE FROM offer")
        await self.conn.execute("VACUUM ANALYZE offer, event")
        await self.conn.execute(
            "UPDATE ride SET requested_at = $1::timestamptz - w FROM unnest($2::uuid[], "
            "$3::interval[]) AS u(id, w) WHERE ride.id = u.id",
            at,
            ride_ids,
            waited,
        )
