"""`/metrics` reports the cluster-wide counts PostgreSQL holds (read through the repositories at
scrape time); a failure to read them would only log a warning, so the values are checked here."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import text

from tests.conftest import METRICS_HEADERS, Account

SAMPLE = re.compile(r'^(coop_\w+)\{region="nyc",(?:status|source)="(\w+)"\} (\S+)$', re.M)


async def test_metrics_count_rides_offers_and_drivers_as_the_database_does(
    client: httpx.AsyncClient, app: Any, rider: Account
) -> None:
    quote = await client.post(
        "/v1/rider/quotes",
        json={
            "pickup": {"lat": 40.7580, "lng": -73.9855},
            "dropoff": {"lat": 40.7061, "lng": -74.0087},
        },
        headers=rider.headers,
    )
    ride = await client.post(
        "/v1/rider/rides",
        json={"quote_id": quote.json()["id"]},
        headers={**rider.headers, "Idempotency-Key": f"metrics-{rider.id}"},
    )
    assert ride.status_code == 201, ride.text
    response = await client.get("/metrics", headers=METRICS_HEADERS)
    assert response.status_code == 200
    samples = {(name, label): float(value) for name, label, value in SAMPLE.findall(response.text)}
    async with app.state.engine.connect() as connection:
        rides = dict(
            (
                await connection.execute(
                    text("SELECT status, count(*) FROM ride WHERE region_id = 'nyc' GROUP BY 1")
                )
            ).all()
        )
        offers = dict(
            (
                await connection.execute(
                    text(
                        "SELECT o.status, count(*) FROM offer o JOIN ride r ON r.id = o.ride_id "
                        "WHERE r.region_id = 'nyc' GROUP BY 1"
                    )
                )
            ).all()
        )
        online = await connection.scalar(text("SELECT count(*) FROM driver WHERE is_online"))
    # Nothing else writes while this test runs (other tests' regions are not counted).
    assert rides.get("requested", 0) >= 1
    assert {s: v for (n, s), v in samples.items() if n == "coop_rides"} == rides
    assert {s: v for (n, s), v in samples.items() if n == "coop_offers"} == offers
    assert samples["coop_drivers_online", "database"] == online
    assert ("coop_drivers_online", "geo_index") in samples
