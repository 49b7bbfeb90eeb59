"""The real-cycle benchmark's world, written in bulk (COPY: thousands of rows a statement).

The tests' large batch seeds with it too. Raw asyncpg: these are data loads of a scratch database,
not the application's statements.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

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

    async def add_history(
        self,
        region: str,
        policy_version: int,
        riders: Sequence[uuid.UUID],
        drivers: Sequence[uuid.UUID],
        n: int,
        before: datetime,
    ) -> None:
        """`n` completed rides of the last days (one every 2 s before `before`), each with its
        quote, accepted offer and four events, as a co-op's tables hold after a while."""
        async with self.conn.transaction():
            await self.conn.execute(
                "CREATE TEMP TABLE history ON COMMIT DROP AS "
                "SELECT gen_random_uuid() AS ride, gen_random_uuid() AS quote, "
                "gen_random_uuid() AS offer, "
                "($1::uuid[])[1 + i % cardinality($1::uuid[])] AS rider, "
                "($2::uuid[])[1 + i % cardinality($2::uuid[])] AS driver, "
                "$3::timestamptz - i * interval '2 s' AS at FROM generate_series(1, $4) AS i",
                riders,
                drivers,
                before,
                n,
            )
            # The same priced trip for every ride; written out in both statements, as one
            # literal each (bandit reads a composed SQL string as an injection risk).
            await self.conn.execute(
                "INSERT INTO quote (id, rider_id, region_id, breakdown, created_at, expires_at, "
                "pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, distance_m, duration_s, "
                "total_cents, driver_cents, coop_cents, currency, policy_version) "
                "SELECT quote, rider, $1, '{}', at - interval '20 min', at - interval '15 min', "
                "40.75, -73.98, 40.759, -73.98, 1200, 300, 1250, 1125, 125, 'USD', "
                "CAST($2 AS integer) FROM history",
                region,
                int(policy_version),
            )
            await self.conn.execute(
                "INSERT INTO ride (id, rider_id, driver_id, quote_id, region_id, status, "
                "requested_at, matched_at, arrived_at, started_at, ended_at, pickup_eta_s, "
                "pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, distance_m, duration_s, "
                "total_cents, driver_cents, coop_cents, currency, policy_version) "
                "SELECT ride, rider, driver, quote, $1, 'completed', at - interval '20 min', "
                "at - interval '19 min', at - interval '15 min', at - interval '14 min', at, 240, "
                "40.75, -73.98, 40.759, -73.98, 1200, 300, 1250, 1125, 125, 'USD', "
                "CAST($2 AS integer) FROM history",
                region,
                int(policy_version),
            )
            await self.conn.execute(
                "INSERT INTO offer (id, ride_id, driver_id, status, eta_s, created_at, "
                "expires_at, responded_at) SELECT offer, ride, driver, 'accepted', 240, "
                "at - interval '20 min', at - interval '20 min' + interval '15 s', "
                "at - interval '19 min' FROM history"
            )
            await self.conn.execute(
                "INSERT INTO event (user_id, ride_id, type, payload, created_at) "
                "SELECT e.user_id, ride, e.type, jsonb_build_object('ride_id', ride::text, "
                "'status', e.type), e.at FROM history CROSS JOIN LATERAL (VALUES "
                "(driver, 'offer', at - interval '20 min'), "
                "(rider, 'ride.matched', at - interval '19 min'), "
                "(rider, 'ride.started', at - interval '14 min'), "
                "(rider, 'ride.completed', at)) AS e(user_id, type, at) ORDER BY e.at"
            )

    async def reopen(
        self, ride_ids: Sequence[uuid.UUID], waited: Sequence[timedelta], at: datetime
    ) -> None:
        """The rides `requested` again, each waiting `waited` at `at` (given-up ones too)."""
        await self.conn.execute(
            "UPDATE ride SET status = 'requested', ended_at = NULL, "
            "requested_at = $1::timestamptz - w FROM unnest($2::uuid[], $3::interval[]) "
            "AS u(id, w) WHERE ride.id = u.id",
            at,
            ride_ids,
            waited,
        )

    async def run_out_offers(self, at: datetime) -> None:
        """Every pending offer past its time at `at`, as if nobody answered the last batch."""
        await self.conn.execute(
            "UPDATE offer SET expires_at = $1::timestamptz - interval '1 s' "
            "WHERE status = 'pending'",
            at,
        )

    async def riders_of(self, ride_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        rows = await self.conn.fetch(
            "SELECT rider_id FROM ride WHERE id = ANY($1::uuid[])", ride_ids
        )
        return [row[0] for row in rows]

    async def explain_offer_insert(self, sql: str, at: datetime, ttl_s: float) -> dict[str, Any]:
        """`EXPLAIN (ANALYZE, FORMAT JSON)` of the dispatcher's offer insert (`sql`, with its
        `:name` parameters) writing again the batch of the pending offers, each first expired,
        all rolled back: where the write phase's time goes in PostgreSQL."""
        names: list[str] = []

        def numbered(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        statement = re.sub(r"(?<!:):(\w+)", numbered, sql)
        tx = self.conn.transaction()
        await tx.start()
        try:
            batch = await self.conn.fetch(
                "SELECT o.ride_id::text, o.driver_id::text, o.eta_s, e.payload::text FROM offer o "
                "JOIN event e ON e.ride_id = o.ride_id AND e.user_id = o.driver_id "
                "AND e.type = 'offer' WHERE o.status = 'pending' ORDER BY e.id"
            )
            await self.conn.execute("UPDATE offer SET status = 'expired' WHERE status = 'pending'")
            values = {
                "ids": [str(uuid.uuid4()) for _ in batch],
                "ride_ids": [row[0] for row in batch],
                "driver_ids": [row[1] for row in batch],
                "eta_s": [row[2] for row in batch],
                "payloads": [row[3] for row in batch],
                "now": at,
                "expires_at": at + timedelta(seconds=ttl_s),
            }
            plan = await self.conn.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement,
                *(values[name] for name in names),
            )
        finally:
            await tx.rollback()
        found: dict[str, Any] = json.loads(plan)[0]
        found["offers"] = len(batch)
        return found

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
