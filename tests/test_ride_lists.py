"""The ride lists load what they show in a fixed number of SQL statements, whatever the limit: the
statements the app's engine sends for one request are counted (SQLAlchemy's
`before_cursor_execute`), at limit=5 and at limit=50, over 60 rides with drivers and receipts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from dispatch.core import clock
from dispatch.fares.models import Quote
from dispatch.rides.models import Ride, RideStatus
from tests.conftest import Account, make_account

PICKUP = {"lat": 40.7580, "lng": -73.9855}
DROPOFF = {"lat": 40.7061, "lng": -74.0087}
RIDES = 60
# What a ride copies from its quote (dispatch/fares/models.py PricedTrip).
PRICED = (
    "pickup_lat", "pickup_lng", "dropoff_lat", "dropoff_lng", "distance_m", "duration_s",
    "total_cents", "driver_cents", "coop_cents", "currency", "policy_version",
)  # fmt: skip


@contextmanager
def counted_statements(app: Any) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
async def ride_history(client: httpx.AsyncClient, app: Any) -> tuple[Account, list[Account]]:
    """A rider with RIDES rides (most completed, some cancelled, the newest matched) shared by
    three drivers, each ride with its own quote, as the request path would have left them."""
    rider = await make_account(client, "rider")
    drivers = [await make_account(client, "driver") for _ in range(3)]
    priced = await client.post(
        "/v1/rider/quotes", json={"pickup": PICKUP, "dropoff": DROPOFF}, headers=rider.headers
    )
    assert priced.status_code == 201, priced.text
    now = clock.utcnow()
    async with app.state.sessionmaker() as session:
        template = await session.scalar(select(Quote).where(Quote.id == priced.json()["id"]))
        assert template is not None
        # The geography columns are computed from the coordinates.
        columns = [
            c.key for c in Quote.__table__.columns if c.key not in ("id", "pickup", "dropoff")
        ]
        for n in range(RIDES):
            quote = Quote(**{name: getattr(template, name) for name in columns})
            quote.id = uuid.uuid4()
            session.add(quote)
            requested = now - timedelta(hours=RIDES - n)
            status = RideStatus.completed if n % 5 else RideStatus.cancelled
            if n == RIDES - 1:
                status = RideStatus.matched  # the newest is under way
            session.add(
                Ride(
                    rider_id=uuid.UUID(rider.id),
                    driver_id=uuid.UUID(drivers[n % 3].id),
                    quote_id=quote.id,
                    region_id=quote.region_id,
                    status=status,
                    requested_at=requested,
                    matched_at=requested + timedelta(minutes=1),
                    ended_at=None
                    if status is RideStatus.matched
                    else requested + timedelta(hours=1),
                    cancelled_by="driver" if status is RideStatus.cancelled else None,
                    **{name: getattr(quote, name) for name in PRICED},
                )
            )
            await session.flush()
        await session.commit()
    return rider, drivers


async def statements_for(
    client: httpx.AsyncClient, app: Any, path: str, account: Account, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    with counted_statements(app) as statements:
        response = await client.get(path, params={"limit": limit}, headers=account.headers)
    assert response.status_code == 200, response.text
    return len(statements), response.json()


async def test_the_rider_list_does_not_query_per_ride(
    client: httpx.AsyncClient, app: Any, ride_history: tuple[Account, list[Account]]
) -> None:
    rider, drivers = ride_history
    few, first = await statements_for(client, app, "/v1/rider/rides", rider, 5)
    many, rides = await statements_for(client, app, "/v1/rider/rides", rider, 50)
    assert len(first) == 5 and len(rides) == 50
    assert many == few, f"limit=5: {few} statements, limit=50: {many}"
    # The batch-loaded views are the views: driver and receipt on every completed ride.
    assert first == rides[:5]
    by_id = {driver.id: driver for driver in drivers}
    for ride in rides:
        assert ride["driver"]["id"] in by_id
        assert ride["driver"]["vehicle"]["plate"] == "TEST123"
        if ride["status"] == "completed":
            assert ride["receipt"]["ride_id"] == ride["id"]
            assert sum(ride["receipt"]["breakdown"].values()) == ride["receipt"]["total_cents"]
        else:
            assert ride["receipt"] is None


async def test_the_driver_list_does_not_query_per_ride(
    client: httpx.AsyncClient, app: Any, ride_history: tuple[Account, list[Account]]
) -> None:
    _, drivers = ride_history
    driver = drivers[(RIDES - 1) % 3]  # the one driving the newest ride
    few, first = await statements_for(client, app, "/v1/driver/rides", driver, 5)
    many, rides = await statements_for(client, app, "/v1/driver/rides", driver, 50)
    assert len(first) == 5 and len(rides) == RIDES // 3
    assert many == few, f"limit=5: {few} statements, limit=50: {many}"
    assert first == rides[:5]
    # The ride under way shows its rider's contact; past rides keep none.
    assert rides[0]["status"] == "matched" and rides[0]["rider"]["name"] == "Test rider"
    assert all(ride["rider"] is None for ride in rides[1:])
