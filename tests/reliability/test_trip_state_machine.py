"""Trip state machine, property-based: random rider, driver and timer actions through the real
services (HTTP routes, the dispatch cycle, PostgreSQL). Every status change observed in the
database must be one that `dispatch/rides/state.py` allows for the actor who caused it, and a
refused action (4xx) must change nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from dispatch.app import create_app
from dispatch.core import clock
from dispatch.core.database import transaction
from dispatch.core.redis import RegionKeys
from dispatch.core.settings import get_settings
from dispatch.dispatcher.cycle import run_cycle
from dispatch.rides.models import RideStatus
from dispatch.rides.state import TRANSITIONS, Actor, allowed
from tests.conftest import Account
from tests.fixtures.dispatching import place_many
from tests.fixtures.regions import CENTER, TEST_SQUARE, create_region, retire_region
from tests.reliability.conftest import bulk_accounts

T = TypeVar("T")
DRIVERS = 3
DRIVER_ACTIONS = {
    "arrive": RideStatus.arrived,
    "start": RideStatus.in_progress,
    "complete": RideStatus.completed,
    "cancel": RideStatus.requested,
}


class World:
    """An app on a private event loop (Hypothesis' rules are synchronous) and one region."""

    def __init__(self) -> None:
        # The loop runs in a thread of its own, so nothing of it (the thread's current loop,
        # what libraries attach to it) mixes with the session loop of the other tests.
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.before_run: Callable[[], None] | None = None
        self.app = create_app(get_settings(), with_api=True, with_dispatcher=False)
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.run(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://test"
        )
        self.region = self.run(create_region(self.app.state, TEST_SQUARE, "h", "Hypothesis town"))
        self.transitions: list[tuple[str, str, str]] = []
        self.outcomes: Counter[str] = Counter()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self.before_run is not None:
            self.before_run()
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.before_run = None
        clock.reset()
        self.run(retire_region(self.app.state, self.region))
        self.run(self.client.aclose())
        self.run(self._lifespan.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


WORLD: World | None = None


class TripMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert WORLD is not None
        self.world = WORLD
        # The app's clock stands still between steps and moves only when `time_passes` says so:
        # the same steps must do the same thing however slowly the machine runs (Hypothesis
        # replays them), so no offer may expire because real seconds went by.
        clock.reset()
        self.now = datetime.now(UTC)
        self.world.before_run = self._freeze
        # Only this example's drivers are in the region's geo index.
        keys = RegionKeys(self.world.region)
        self.world.run(self.world.app.state.redis.delete(keys.drivers_geo, keys.drivers_seen))
        self.drivers: list[Account] = self.world.run(
            bulk_accounts(self.world.app, "driver", DRIVERS)
        )
        self.positions = {
            d.id: (CENTER[0] + 0.001 * i, CENTER[1] + 0.001 * i) for i, d in enumerate(self.drivers)
        }
        self.rides: dict[str, Account] = {}  # ride id -> its rider
        self.status: dict[str, RideStatus] = {}
        self.offers_out = False

    # --- observation ---------------------------------------------------------------------
    async def _statuses(self) -> dict[str, RideStatus]:
        if not self.rides:
            return {}
        async with transaction(self.world.app.state) as session:
            rows = await session.execute(
                text("SELECT id::text, status FROM ride WHERE id::text = ANY(:ids)"),
                {"ids": list(self.rides)},
            )
            return {row[0]: RideStatus(row[1]) for row in rows}

    def observe(self, actor: Actor, response: httpx.Response | None = None) -> None:
        if response is not None:
            code = response.json().get("error") if response.status_code >= 400 else ""
            self.world.outcomes[
                f"{response.request.url.path.rsplit('/', 1)[-1]} {response.status_code} {code}"
            ] += 1
        after = self.world.run(self._statuses())
        changed = {r: s for r, s in after.items() if self.status.get(r) != s}
        for ride_id, new in changed.items():
            old = self.status.get(ride_id)
            if old is None:  # a new request
                assert new is RideStatus.requested and actor is Actor.rider
            else:
                assert allowed(old, new, actor), f"{actor} moved {ride_id} {old} -> {new}"
                self.world.transitions.append((actor.value, old.value, new.value))
        if response is not None and response.status_code >= 400:
            assert not changed, f"refused ({response.status_code}) but changed {changed}"
            assert response.status_code in (404, 409, 410, 422), response.text
        self.status.update(after)

    def has_rides(self) -> bool:
        return bool(self.rides)

    def has_active_ride(self) -> bool:
        active = (RideStatus.matched, RideStatus.arrived, RideStatus.in_progress)
        return any(s in active for s in self.status.values())

    def room_for_a_request(self) -> bool:
        ended = (RideStatus.completed, RideStatus.cancelled, RideStatus.unfulfilled)
        return sum(s not in ended for s in self.status.values()) < DRIVERS

    def may_have_offers(self) -> bool:
        return self.offers_out

    # --- rider ---------------------------------------------------------------------------
    @initialize()
    def first_request(self) -> None:
        self.request_ride()

    @rule()
    def request_ride(self) -> None:
        if not self.room_for_a_request():
            return

        async def go() -> httpx.Response:
            rider = (await bulk_accounts(self.world.app, "rider", 1))[0]
            body = {
                "pickup": {"lat": CENTER[0], "lng": CENTER[1]},
                "dropoff": {"lat": CENTER[0] + 0.02, "lng": CENTER[1] + 0.02},
            }
            quote = await self.world.client.post(
                "/v1/rider/quotes", json=body, headers=rider.headers
            )
            assert quote.status_code == 201, quote.text
            ride = await self.world.client.post(
                "/v1/rider/rides", json={"quote_id": quote.json()["id"]}, headers=rider.headers
            )
            assert ride.status_code == 201, ride.text
            self.rides[ride.json()["id"]] = rider
            return ride

        self.observe(Actor.rider, self.world.run(go()))

    @rule(pick=st.integers(min_value=0, max_value=10_000))
    def rider_cancels(self, pick: int) -> None:
        # Rules have no preconditions: whether one applies depends on the database, and
        # Hypothesis needs the rule choice to depend on the drawn data alone.
        if not self.rides:
            return
        ride_id = sorted(self.rides)[pick % len(self.rides)]
        rider = self.rides[ride_id]
        response = self.world.run(
            self.world.client.post(f"/v1/rider/rides/{ride_id}/cancel", headers=rider.headers)
        )
        self.observe(Actor.rider, response)

    # --- driver --------------------------------------------------------------------------
    @rule(pick=st.integers(min_value=0, max_value=10_000), decline=st.booleans())
    def driver_answers_offer(self, pick: int, decline: bool) -> None:
        if not self.may_have_offers():
            return
        offers = []
        for account in self.drivers:
            offer = self.world.run(
                self.world.client.get("/v1/driver/offers/current", headers=account.headers)
            ).json()
            if offer is not None:
                offers.append((account, offer))
        self.offers_out = len(offers) > 1
        if not offers:
            return
        account, offer = offers[pick % len(offers)]
        path = f"/v1/driver/offers/{offer['offer_id']}/{'decline' if decline else 'accept'}"
        response = self.world.run(self.world.client.post(path, headers=account.headers))
        self.observe(Actor.driver, response)

    @rule(
        driver=st.integers(min_value=0, max_value=DRIVERS - 1),
        action=st.sampled_from(sorted(DRIVER_ACTIONS)),
        anyones=st.booleans(),
        pick=st.integers(min_value=0, max_value=10_000),
    )
    def driver_acts_on_a_ride(self, driver: int, action: str, anyones: bool, pick: int) -> None:
        """On the driver's own ride (legal or not in its state), or on anybody's."""
        account = self.drivers[driver]
        if not anyones:
            current = self.world.run(
                self.world.client.get("/v1/driver/rides/current", headers=account.headers)
            ).json()
            if current is None:
                return
            ride_id = current["id"]
        elif self.rides:
            ride_id = sorted(self.rides)[pick % len(self.rides)]
        else:
            return
        body = {"reason": "property test"} if action == "cancel" else None
        response = self.world.run(
            self.world.client.post(
                f"/v1/driver/rides/{ride_id}/{action}", json=body, headers=account.headers
            )
        )
        self.observe(Actor.driver, response)

    @rule(driver=st.integers(min_value=0, max_value=DRIVERS - 1))
    def driver_moves_own_ride_on(self, driver: int) -> None:
        """The happy path, so that random sequences reach the later states too."""
        if not self.has_active_ride():
            return
        account = self.drivers[driver]
        current = self.world.run(
            self.world.client.get("/v1/driver/rides/current", headers=account.headers)
        ).json()
        if current is None:
            return
        action = {"matched": "arrive", "arrived": "start", "in_progress": "complete"}[
            current["status"]
        ]
        response = self.world.run(
            self.world.client.post(
                f"/v1/driver/rides/{current['id']}/{action}", headers=account.headers
            )
        )
        assert response.status_code == 200, response.text
        self.observe(Actor.driver, response)

    @rule(depth=st.integers(min_value=0, max_value=3))
    def a_ride_gets_going(self, depth: int) -> None:
        """Request, dispatch, accept, then `depth` happy steps (each observed like any other),
        so that the random actions around it meet rides in every state."""
        self.request_ride()
        self.dispatch_batch()
        self.driver_answers_offer(pick=0, decline=False)
        for _ in range(depth):
            for driver in range(DRIVERS):
                self.driver_moves_own_ride_on(driver)

    # --- dispatcher and time -------------------------------------------------------------
    @rule()
    def dispatch_batch(self) -> None:
        app = self.world.app
        self.world.run(place_many(app, self.world.region, self.positions))
        report = self.world.run(
            run_cycle(app.state, self.world.region, app.state.settings, app.state.eta)
        )
        self.offers_out = self.offers_out or report.offers_sent > 0
        self.observe(Actor.dispatcher)

    @rule(seconds=st.sampled_from([0, 0, 1, 5, 31]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    def _freeze(self) -> None:
        clock.reset()
        clock.advance(self.now - datetime.now(UTC))

    @invariant()
    def one_active_ride_per_driver(self) -> None:
        active = (RideStatus.matched, RideStatus.arrived, RideStatus.in_progress)
        assert sum(s in active for s in self.status.values()) <= DRIVERS

    def teardown(self) -> None:
        # Leave nothing open for the next example: cancel what the rider still can.
        for ride_id, status in self.world.run(self._statuses()).items():
            if status in (RideStatus.requested, RideStatus.matched, RideStatus.arrived):
                self.world.run(
                    self.world.client.post(
                        f"/v1/rider/rides/{ride_id}/cancel", headers=self.rides[ride_id].headers
                    )
                )


@pytest.mark.parametrize("examples", [pytest.param(20, id="default")])
def test_trip_state_machine(examples: int) -> None:
    in_own_process(examples, steps=30, name="trip_state_machine")


@pytest.mark.long
def test_trip_state_machine_long() -> None:
    in_own_process(150, steps=50, name="trip_state_machine_long")


def in_own_process(examples: int, steps: int, name: str) -> None:
    """The machine runs its own app and event loop; in a process of its own, none of that can
    outlive the test and hold up the session's teardown (it did, after the kill tests)."""
    root = Path(__file__).resolve().parents[2]
    module = "tests.reliability.test_trip_state_machine"
    done = subprocess.run(
        [sys.executable, "-m", module, str(examples), str(steps), name],
        cwd=root,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    print(done.stdout[-4000:])
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-8000:]


def run_machine(examples: int, steps: int, name: str) -> None:
    from tests.reliability.conftest import record_figures

    global WORLD
    WORLD = World()
    try:
        run_state_machine_as_test(
            TripMachine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
        seen = sorted(set(WORLD.transitions))
        print("\ntransitions seen:", seen, WORLD.outcomes)
        legal = {
            (a.value, old.value, new.value)
            for (old, new), actors in TRANSITIONS.items()
            for a in actors
        }
        assert set(seen) <= legal
        record_figures(
            name,
            {
                "examples": examples,
                "steps_per_example": steps,
                "transitions_observed": len(WORLD.transitions),
                "distinct_legal_transitions_covered": f"{len(seen)}/{len(legal)}",
                "illegal_transitions_accepted": 0,
            },
        )
    finally:
        WORLD.close()
        WORLD = None


if __name__ == "__main__":
    run_machine(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
