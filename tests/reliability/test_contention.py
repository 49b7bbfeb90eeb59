"""No double dispatch under contention: record every operation, check the history afterwards.

Many ride requests against few drivers; two dispatchers race each batch; every offer is accepted
several times at once by its driver (and once by a stranger), while some riders cancel at the same
moment. Afterwards: exactly one accept per accepted offer succeeded and the others got 409, no
driver ever held two rides at once, no ride ever had two drivers, and every request ended.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from dispatch.core.database import transaction
from dispatch.dispatcher.cycle import run_cycle
from tests.conftest import Account
from tests.fixtures.dispatching import place_many, quote_for
from tests.fixtures.regions import CENTER
from tests.reliability.conftest import bulk_accounts, record_figures

CONCURRENT_ACCEPTS = 4
CANCEL_SHARE = 0.05


@dataclass
class Op:
    kind: str
    actor: str
    target: str
    status: int
    code: str | None
    started: float
    ended: float


class History:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    async def call(
        self,
        http: httpx.AsyncClient,
        kind: str,
        account: Account,
        target: str,
        path: str,
        body: Any = None,
    ) -> httpx.Response:
        started = time.monotonic()
        response = await http.post(path, json=body, headers=account.headers)
        code = None
        if response.status_code >= 400:
            code = response.json().get("error")
        self.ops.append(
            Op(kind, account.id, target, response.status_code, code, started, time.monotonic())
        )
        return response


async def pending_offers(app: Any, region: str) -> list[tuple[str, str, str]]:
    async with transaction(app.state) as session:
        rows = await session.execute(
            text(
                "SELECT o.id::text, o.driver_id::text, o.ride_id::text FROM offer o "
                "JOIN ride r ON r.id = o.ride_id WHERE r.region_id = :region AND o.status = 'pending'"
            ),
            {"region": region},
        )
        return [(row[0], row[1], row[2]) for row in rows]


async def contention(
    client: httpx.AsyncClient, app: Any, region: str, requests: int, drivers: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    started = time.monotonic()
    # Long timeouts: this test is about races, not about giving up.
    settings = app.state.settings.model_copy(update={"request_timeout_s": 3600, "offer_ttl_s": 600})
    fleet = await bulk_accounts(app, "driver", drivers)
    riders = await bulk_accounts(app, "rider", requests)
    by_id = {account.id: account for account in fleet + riders}
    positions = {
        driver.id: (CENTER[0] + rng.uniform(-0.01, 0.01), CENTER[1] + rng.uniform(-0.01, 0.01))
        for driver in fleet
    }
    await place_many(app, region, positions)
    history = History()
    gate = asyncio.Semaphore(40)

    async def limited(coro: Any) -> Any:
        async with gate:
            return await coro

    async def ask(rider: Account) -> tuple[Account, str]:
        lat, lng = CENTER[0] + rng.uniform(-0.01, 0.01), CENTER[1] + rng.uniform(-0.01, 0.01)
        quote_id = await quote_for(client, rider, lat, lng)
        ride = await history.call(
            client, "request", rider, quote_id, "/v1/rider/rides", {"quote_id": quote_id}
        )
        assert ride.status_code == 201, ride.text
        return rider, str(ride.json()["id"])

    rides = dict(
        (ride_id, rider)
        for rider, ride_id in await asyncio.gather(*(limited(ask(r)) for r in riders))
    )

    async def drive(driver: Account, ride_id: str) -> None:
        for action in ("arrive", "start", "complete"):
            response = await history.call(
                client, action, driver, ride_id, f"/v1/driver/rides/{ride_id}/{action}"
            )
            if response.status_code != 200:
                assert response.status_code == 409, response.text  # the rider cancelled meanwhile
                return

    rounds = 0
    busy: dict[str, str] = {}  # driver -> ride they are still driving (finished next round)
    while True:
        rounds += 1
        assert rounds < requests * 3, "dispatch made no progress"
        await place_many(app, region, positions)  # drivers' apps keep sending positions
        # Two dispatchers at once: the region's advisory lock lets one of them run.
        reports = await asyncio.gather(
            run_cycle(app.state, region, settings, app.state.eta),
            run_cycle(app.state, region, settings, app.state.eta),
        )
        assert sum(report.ran for report in reports) >= 1
        offers = await pending_offers(app, region)
        unfinished = [asyncio.create_task(drive(by_id[d], r)) for d, r in busy.items()]
        busy = {}
        if not offers and not unfinished:
            async with transaction(app.state) as session:
                still_open = await session.scalar(
                    text(
                        "SELECT count(*) FROM ride WHERE region_id = :region "
                        "AND status IN ('requested', 'matched', 'arrived', 'in_progress')"
                    ),
                    {"region": region},
                )
            if not still_open:
                break
            continue
        attempts = []
        for offer_id, driver_id, ride_id in offers:
            path = f"/v1/driver/offers/{offer_id}/accept"
            owner = by_id[driver_id]
            attempts += [
                history.call(client, "accept", owner, offer_id, path)
                for _ in range(CONCURRENT_ACCEPTS)
            ]
            stranger = rng.choice([d for d in fleet if d.id != driver_id])
            attempts.append(history.call(client, "accept", stranger, offer_id, path))
            if rng.random() < CANCEL_SHARE:
                rider = rides[ride_id]
                attempts.append(
                    history.call(
                        client, "cancel", rider, ride_id, f"/v1/rider/rides/{ride_id}/cancel"
                    )
                )
        rng.shuffle(attempts)
        await asyncio.gather(*(limited(a) for a in attempts), *unfinished)
        # Drivers who won an accept this round drive their ride next round, so they stay busy
        # (and must not be offered another ride) while the next batch runs.
        owners = {offer_id: driver_id for offer_id, driver_id, _ in offers}
        rides_of_offer = {offer_id: ride_id for offer_id, _, ride_id in offers}
        for op in history.ops:
            if (
                op.kind == "accept"
                and op.status == 200
                and op.target in owners
                and owners[op.target] == op.actor
            ):
                busy[op.actor] = rides_of_offer[op.target]

    return await check_history(app, region, history, rides, fleet, rounds, started)


async def check_history(
    app: Any,
    region: str,
    history: History,
    rides: dict[str, Account],
    fleet: list[Account],
    rounds: int,
    started: float,
) -> dict[str, Any]:
    async with transaction(app.state) as session:
        offer_rows = (
            await session.execute(
                text(
                    "SELECT o.id::text, o.driver_id::text, o.ride_id::text, o.status FROM offer o "
                    "JOIN ride r ON r.id = o.ride_id WHERE r.region_id = :region"
                ),
                {"region": region},
            )
        ).all()
        ride_rows = (
            await session.execute(
                text(
                    "SELECT id::text, status, driver_id::text, matched_at, ended_at FROM ride "
                    "WHERE region_id = :region"
                ),
                {"region": region},
            )
        ).all()
        overlapping = await session.scalar(
            text(
                "SELECT count(*) FROM ride a JOIN ride b ON a.driver_id = b.driver_id "
                "AND a.id < b.id WHERE a.region_id = :region AND b.region_id = :region "
                "AND tstzrange(a.matched_at, a.ended_at) && tstzrange(b.matched_at, b.ended_at)"
            ),
            {"region": region},
        )
        # Never two offers pending for one request at the same time.
        pending_twice = await session.scalar(
            text(
                "SELECT count(*) FROM offer a JOIN offer b ON a.ride_id = b.ride_id AND a.id < b.id "
                "JOIN ride r ON r.id = a.ride_id WHERE r.region_id = :region "
                "AND tstzrange(a.created_at, coalesce(a.responded_at, 'infinity')) "
                "&& tstzrange(b.created_at, coalesce(b.responded_at, 'infinity'))"
            ),
            {"region": region},
        )
    offers = {row[0]: row for row in offer_rows}
    statuses = Counter(row[1] for row in ride_rows)
    accepts: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.kind == "accept":
            accepts[op.target].append(op)

    # Exactly one accept per accepted offer wins; the owner's other tries get 409; strangers 404.
    for offer_id, ops in accepts.items():
        _, owner, ride_id, status = offers[offer_id]
        wins = [op for op in ops if op.status == 200]
        assert len(wins) == (1 if status == "accepted" else 0), (offer_id, status, ops)
        for op in ops:
            if op.actor != owner:
                assert op.status == 404, op
            elif op.status != 200:
                assert op.status == 409 and op.code in (
                    "offer_already_accepted",
                    "offer_not_pending",
                    "ride_not_available",
                ), op
    # No ride with two drivers: at most one accepted offer, and the ride's driver is its owner.
    accepted_by_ride: dict[str, list[str]] = defaultdict(list)
    for _, owner, ride_id, status in offers.values():
        if status == "accepted":
            accepted_by_ride[ride_id].append(owner)
    rides_with_two_drivers = sum(len(owners) > 1 for owners in accepted_by_ride.values())
    for ride_id, _status, driver_id, _, _ in ride_rows:
        if driver_id is not None:
            assert accepted_by_ride[ride_id] == [driver_id]
    # No driver with two rides at once (now or ever), and every request ended.
    assert overlapping == 0
    assert rides_with_two_drivers == 0
    assert pending_twice == 0
    assert set(statuses) <= {"completed", "cancelled"}, statuses
    assert len(ride_rows) == len(rides)

    codes = Counter(
        f"{op.status} {op.code}" if op.code else str(op.status)
        for op in history.ops
        if op.kind == "accept"
    )
    return {
        "requests": len(rides),
        "drivers": len(fleet),
        "rounds": rounds,
        "offers": len(offers),
        "accept_attempts": sum(codes.values()),
        "accept_outcomes": dict(codes),
        "rides": dict(statuses),
        "drivers_with_two_active_rides": overlapping,
        "rides_with_two_drivers": rides_with_two_drivers,
        "requests_with_two_pending_offers": pending_twice,
        "operations": len(history.ops),
        "seconds": round(time.monotonic() - started, 1),
    }


async def test_no_double_dispatch(client: httpx.AsyncClient, app: Any, region: str) -> None:
    figures = await contention(client, app, region, requests=150, drivers=25, seed=11)
    record_figures("contention_150x25", figures)


@pytest.mark.long
async def test_no_double_dispatch_long(client: httpx.AsyncClient, app: Any, region: str) -> None:
    figures = await contention(client, app, region, requests=1000, drivers=100, seed=12)
    record_figures("contention_1000x100", figures)
