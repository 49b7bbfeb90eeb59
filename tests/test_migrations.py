"""Migrations on data the running system can hold, each on a scratch database of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import text

from dispatch.accounts.models import Driver, Role, UserAccount
from dispatch.core import clock
from dispatch.core.database import transaction
from dispatch.core.settings import Settings
from dispatch.core.state import ProcessState
from dispatch.demo import seed_region_and_policy
from dispatch.fares.service import create_quote
from dispatch.matching import StraightLineEta
from dispatch.rides import service as rides
from dispatch.rides.models import Offer, OfferStatus
from tests.conftest import SERVER_URL, TEST_DB
from tests.loadtests.test_seeding import TRIP

SCRATCH_DB = f"{TEST_DB}_migrations"
SCRATCH_URL = SERVER_URL.rsplit("/", 1)[0] + "/" + SCRATCH_DB


def alembic(command: str, revision: str) -> subprocess.CompletedProcess[str]:
    """`alembic upgrade|downgrade <revision>` on the scratch database, in a process of its own
    (the migrations read their database from the settings)."""
    script = (
        "from alembic import command; from dispatch.migrate import alembic_config; "
        f"command.{command}(alembic_config(), {revision!r})"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ | {"COOP_DATABASE_URL": SCRATCH_URL},
        capture_output=True,
        text=True,
        timeout=120,
    )


def migrated(command: str, revision: str) -> None:
    done = alembic(command, revision)
    assert done.returncode == 0, done.stderr


@pytest.fixture
async def scratch(settings: Settings) -> AsyncIterator[ProcessState]:
    """A scratch database at head, and a process state on it."""
    admin = await asyncpg.connect(SERVER_URL.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {SCRATCH_DB}")
        migrated("upgrade", "head")
        state = ProcessState.open(settings.model_copy(update={"database_url": SCRATCH_URL}))
        async with transaction(state) as session:
            await seed_region_and_policy(session, settings.region, settings.currency)
        try:
            yield state
        finally:
            await state.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
        await admin.close()


def account(role: Role) -> UserAccount:
    user_id = uuid.uuid4()
    return UserAccount(
        id=user_id, email=f"{user_id.hex[:10]}@m.coop", password_hash="-", name="M", role=role
    )


async def test_0004_keeps_one_open_ride_per_rider_and_cancels_the_rest(
    scratch: ProcessState, settings: Settings
) -> None:
    """Riders who got several open rides from concurrent requests (issue 18.2) stopped 0004,
    which told the operator to cancel the extras by hand (found in review)."""
    rider, driver = account(Role.rider), account(Role.driver)
    async with transaction(scratch) as session:
        session.add_all([rider, driver])
        await session.flush()
        session.add(Driver(user_id=driver.id))
        older = await rides.request_ride(
            session,
            rider.id,
            (await create_quote(session, settings, StraightLineEta(), rider.id, TRIP)).id,
        )
        now = clock.utcnow()
        offer = Offer(
            id=uuid.uuid4(),
            ride_id=older.id,
            driver_id=driver.id,
            status=OfferStatus.pending,
            eta_s=60,
            created_at=now,
            expires_at=now + timedelta(minutes=5),
        )
        session.add(offer)
        second_quote = await create_quote(session, settings, StraightLineEta(), rider.id, TRIP)

        # A second rider, whose older ride has its driver at the pickup and a newer one matched.
        riding, at_pickup, matched_driver = (
            account(Role.rider),
            account(Role.driver),
            account(Role.driver),
        )
        session.add_all([riding, at_pickup, matched_driver])
        await session.flush()
        session.add_all([Driver(user_id=at_pickup.id), Driver(user_id=matched_driver.id)])
        more_quotes = [
            (await create_quote(session, settings, StraightLineEta(), riding.id, TRIP)).id
            for _ in range(2)
        ]

    migrated("downgrade", "0003")
    newer, arrived, matched = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with transaction(scratch) as session:
        # What the race left: more open rides, requested later than the first.
        for ride_id, rider_id, quote_id, status, driver_id, minutes in (
            (newer, rider.id, second_quote.id, "requested", None, 1),
            (arrived, riding.id, more_quotes[0], "arrived", at_pickup.id, 0),
            (matched, riding.id, more_quotes[1], "matched", matched_driver.id, 1),
        ):
            await session.execute(
                text(
                    "INSERT INTO ride (id, rider_id, driver_id, quote_id, region_id, status, "
                    "pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, distance_m, duration_s, "
                    "total_cents, driver_cents, coop_cents, currency, policy_version, "
                    "requested_at) "
                    "SELECT :id, :rider, :driver, :quote, region_id, :status, pickup_lat, "
                    "pickup_lng, dropoff_lat, dropoff_lng, distance_m, duration_s, total_cents, "
                    "driver_cents, coop_cents, currency, policy_version, "
                    "requested_at + make_interval(mins => :minutes) FROM ride WHERE id = :older"
                ),
                {
                    "id": ride_id,
                    "rider": rider_id,
                    "driver": driver_id,
                    "quote": quote_id,
                    "status": status,
                    "minutes": minutes,
                    "older": older.id,
                },
            )
        # The matched driver was told who the rider is.
        await session.execute(
            text(
                "INSERT INTO event (user_id, ride_id, type, payload) VALUES (:driver, :ride, "
                "'ride.assigned', CAST(:payload AS jsonb))"
            ),
            {
                "driver": matched_driver.id,
                "ride": matched,
                "payload": '{"ride": {"rider": {"name": "M", "phone": "+12125550100"}}}',
            },
        )
        last_event = (await session.execute(text("SELECT max(id) FROM event"))).scalar_one()

    migrated("upgrade", "head")
    async with transaction(scratch) as session:
        statuses = dict(
            (
                await session.execute(
                    text("SELECT id, status FROM ride WHERE rider_id = :r"), {"r": rider.id}
                )
            ).all()
        )
        assert statuses == {newer: "requested", older.id: "cancelled"}
        cancelled = (
            await session.execute(
                text("SELECT cancelled_by, cancel_reason, ended_at FROM ride WHERE id = :id"),
                {"id": older.id},
            )
        ).one()
        assert cancelled.cancelled_by == "system"
        assert cancelled.cancel_reason and cancelled.ended_at is not None
        offer_status = await session.scalar(
            text("SELECT status FROM offer WHERE id = :id"), {"id": offer.id}
        )
        assert offer_status == "withdrawn"
        events = (
            await session.execute(
                text("SELECT user_id, ride_id, type, payload FROM event WHERE id > :after"),
                {"after": last_event or 0},
            )
        ).all()
        system_cancel = {
            "status": "cancelled",
            "cancelled_by": "system",
            "reason": cancelled.cancel_reason,
        }
        assert {(e.user_id, e.ride_id, e.type): e.payload for e in events} == {
            (driver.id, older.id, "offer.withdrawn"): {"offer_id": str(offer.id)},
            (rider.id, older.id, "ride.cancelled"): system_cancel,
            (riding.id, matched, "ride.cancelled"): system_cancel,
            (matched_driver.id, matched, "ride.cancelled"): system_cancel,
        }
        assert len(events) == 4

        # The ride under way is kept over a newer request: nobody may cancel it.
        kept = dict(
            (
                await session.execute(
                    text("SELECT id, status FROM ride WHERE rider_id = :r"), {"r": riding.id}
                )
            ).all()
        )
        assert kept == {arrived: "arrived", matched: "cancelled"}
        assigned = await session.scalar(
            text("SELECT payload FROM event WHERE ride_id = :ride AND type = 'ride.assigned'"),
            {"ride": matched},
        )
        assert assigned == {"ride": {"rider": None}}
        # ...and the index that refuses a second open ride is in place.
        indexes = await session.scalar(
            text("SELECT count(*) FROM pg_indexes WHERE indexname = 'uq_ride_rider_open'")
        )
        assert indexes == 1


async def test_0006_downgrade_refuses_while_a_sealed_ballot_needs_its_salt(
    scratch: ProcessState,
) -> None:
    """Dropping ballot.salt left every open proposal's commitments unopenable and `governance
    verify` failing for good (found in review)."""
    async with transaction(scratch) as session:
        await session.execute(
            text(
                "INSERT INTO governance_audit (seq, type, payload, created_at, prev_hash, hash) "
                "VALUES (1, 'ballot.cast', CAST(:payload AS jsonb), now(), :zero, :hash)"
            ),
            {"payload": '{"commitment": "' + "ab" * 32 + '"}', "zero": "0" * 64, "hash": "1" * 64},
        )
    refused = alembic("downgrade", "0005")
    assert refused.returncode != 0
    assert "refusing to drop ballot.salt" in refused.stderr
    assert "1 audit entries with a commitment" in refused.stderr
    async with transaction(scratch) as session:
        columns = await session.scalar(
            text(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_name = 'ballot' AND column_name = 'salt'"
            )
        )
        assert columns == 1
    # (With no sealed ballot the downgrade runs: the 0004 test goes down through it to 0003.)


async def test_0004_stops_on_two_trips_in_progress_and_cancels_neither(
    scratch: ProcessState, settings: Settings
) -> None:
    """The race could leave a rider two started trips (two drivers both pressed start): the
    state machine lets nobody cancel a trip under way, so the upgrade names them and stops."""
    rider, first_driver, second_driver = (
        account(Role.rider),
        account(Role.driver),
        account(Role.driver),
    )
    async with transaction(scratch) as session:
        session.add_all([rider, first_driver, second_driver])
        await session.flush()
        session.add_all([Driver(user_id=first_driver.id), Driver(user_id=second_driver.id)])
        first = await rides.request_ride(
            session,
            rider.id,
            (await create_quote(session, settings, StraightLineEta(), rider.id, TRIP)).id,
        )
        second_quote = await create_quote(session, settings, StraightLineEta(), rider.id, TRIP)
    migrated("downgrade", "0003")
    second = uuid.uuid4()
    async with transaction(scratch) as session:
        await session.execute(
            text("UPDATE ride SET status = 'in_progress', driver_id = :driver WHERE id = :id"),
            {"driver": first_driver.id, "id": first.id},
        )
        await session.execute(
            text(
                "INSERT INTO ride (id, rider_id, driver_id, quote_id, region_id, status, "
                "pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, distance_m, duration_s, "
                "total_cents, driver_cents, coop_cents, currency, policy_version, requested_at) "
                "SELECT :id, rider_id, :driver, :quote, region_id, 'in_progress', pickup_lat, "
                "pickup_lng, dropoff_lat, dropoff_lng, distance_m, duration_s, total_cents, "
                "driver_cents, coop_cents, currency, policy_version, requested_at "
                "FROM ride WHERE id = :first"
            ),
            {"id": second, "driver": second_driver.id, "quote": second_quote.id, "first": first.id},
        )
    refused = alembic("upgrade", "head")
    assert refused.returncode != 0
    assert "more than one trip in progress" in refused.stderr
    assert str(second) in refused.stderr or str(first.id) in refused.stderr
    async with transaction(scratch) as session:
        statuses = (
            await session.execute(
                text("SELECT status FROM ride WHERE rider_id = :r"), {"r": rider.id}
            )
        ).scalars()
        assert sorted(statuses) == ["in_progress", "in_progress"]
