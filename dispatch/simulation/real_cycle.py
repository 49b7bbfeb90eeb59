"""`python -m dispatch.simulation.real_cycle`: the dispatcher's own `run_cycle` on PostGIS + Redis.

Beside it, in the same run and on the same batches, the engine-only cycle of `batch_cycle` (the
fleet from Redis, `plan_batch`, offers as one Redis hash), so the ratio between the two holds
whatever else the machine is doing. Writes `docs/benchmarks/real_cycle.md`.

Each size gets a database of its own (`<COOP_DATABASE_URL's name>_real_cycle`, dropped and
migrated), one rider, quote and `requested` ride per request at real taxi pickups, one driver
account per driver at real Uber pickups in the region's Redis GEO index. Two phases: `fresh`
(before every cycle the previous one's offers and events are deleted and the requests' waits
reset: the best case, no expirations) and `steady` (250,000 completed rides with their offers and
events in the tables; the previous batch's offers run out unanswered, so every cycle expires
them, and a tenth more requests than the batch have waited past the timeout and are given up).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from dispatch.core.clock import utcnow
from dispatch.core.database import create_engine, create_sessionmaker
from dispatch.core.heap import freeze_startup_heap
from dispatch.core.redis import Redis, RegionKeys, create_redis
from dispatch.core.settings import get_settings
from dispatch.core.state import ProcessState
from dispatch.dispatcher.cycle import CycleReport, matching_settings, run_cycle
from dispatch.matching.batch import DriverSnapshot, RequestBatch
from dispatch.matching.eta import FloatArray, StraightLineEta
from dispatch.rides.repository import _INSERT_OFFERS  # the statement the cycle's write runs
from dispatch.simulation import batch_cycle
from dispatch.simulation.datasets import DATA_DIR, TAXI_FILE, UBER_FILE
from dispatch.simulation.repository import WorldRepository, recreate_database

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "docs" / "benchmarks" / "real_cycle.md"
REGION = "bench"
NYC_AREA = "MULTIPOLYGON(((-74.3 40.45, -73.65 40.45, -73.65 40.95, -74.3 40.95, -74.3 40.45)))"
SIZES = ((2000, 10000, 10), (5000, 50000, 5))  # requests, drivers, cycles of each phase
HISTORY_RIDES = 250_000
TARGETS_MS = {(2000, 10000): 100.0, (5000, 50000): 400.0}  # issue 11.7, real cycle p50
STALL_TARGET_MS = 5.0  # "no cycle work of more than a few milliseconds on the event loop"


async def place_drivers(
    redis: Redis, region: str, driver_ids: Sequence[uuid.UUID], lat: FloatArray, lng: FloatArray
) -> None:
    """Drivers in the region's GEO index, seen now (as their position updates leave them)."""
    keys = RegionKeys(region)
    geo: list[Any] = []
    for driver_id, la, ln in zip(driver_ids, lat.tolist(), lng.tolist(), strict=True):
        geo += (ln, la, str(driver_id))
    await redis.geoadd(keys.drivers_geo, geo)
    await mark_seen(redis, region, driver_ids)


async def mark_seen(redis: Redis, region: str, driver_ids: Sequence[uuid.UUID]) -> None:
    now = time.time()
    await redis.zadd(RegionKeys(region).drivers_seen, {str(d): now for d in driver_ids})


# The benchmark.


@dataclass
class SizeRun:
    n_requests: int
    n_drivers: int
    phase: str
    real: list[CycleReport] = field(default_factory=list)
    stalls_ms: list[float] = field(default_factory=list)  # longest event-loop stall per cycle
    engine: list[batch_cycle.CycleTimes] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    explain: dict[str, Any] = field(default_factory=dict)  # the offer insert's EXPLAIN ANALYZE


class LoopWatch:
    """The longest time the event loop went without running a 2 ms ticker."""

    def __init__(self) -> None:
        self.longest_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.002)
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - before) * 1000 - 2.0)

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def measure_size(
    n_requests: int, n_drivers: int, cycles: int, data: Path, seed: int = 0
) -> list[SizeRun]:
    base = get_settings()
    name = base.database_url.rsplit("/", 1)[1].split("?")[0] + "_real_cycle"
    url = base.database_url.rsplit("/", 1)[0] + "/" + name
    await recreate_database(base.database_url, name)
    os.environ["COOP_DATABASE_URL"] = url
    get_settings.cache_clear()
    settings = get_settings()
    migrate = [sys.executable, "-m", "dispatch.cli", "migrate"]
    env = {**os.environ, "COOP_DATABASE_URL": url}
    await asyncio.to_thread(subprocess.run, migrate, check=True, env=env)
    requests, drivers = batch_cycle.make_batch(
        data / TAXI_FILE, data / UBER_FILE, n_requests, n_drivers, seed
    )
    now = utcnow()
    conn = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    engine = create_engine(settings, pool_size=2)
    redis = create_redis(settings.redis_url)
    state = ProcessState(settings, engine, create_sessionmaker(engine), redis)
    sync_redis = batch_cycle.bench_redis()
    fresh_run = SizeRun(n_requests, n_drivers, "fresh")
    steady_run = SizeRun(n_requests, n_drivers, "steady")
    try:
        world = WorldRepository(conn)
        policy = await world.add_region(REGION, NYC_AREA)
        ride_ids = await world.add_requests(
            REGION, policy, requests.lat.tolist(), requests.lng.tolist(), now
        )
        driver_ids = await world.add_drivers(n_drivers)
        keys = RegionKeys(REGION)
        await redis.delete(keys.drivers_geo, keys.drivers_seen)
        await place_drivers(redis, REGION, driver_ids, drivers.lat, drivers.lng)
        await world.analyze()
        # The engine-only cycle plans the very batch the real one reads back from PostgreSQL.
        engine_requests = RequestBatch(
            ride_ids=[str(r) for r in ride_ids],
            lat=requests.lat,
            lng=requests.lng,
            waited_s=requests.waited_s,
            excluded=[frozenset()] * n_requests,
        )
        engine_drivers = DriverSnapshot(
            [str(d) for d in driver_ids],
            drivers.lat,
            drivers.lng,
            drivers.idle_s,
            drivers.earned_cents,
        )
        engine_key = batch_cycle.load_fleet(sync_redis, engine_drivers, region="engine-only")
        eta = StraightLineEta(speed_kmh=settings.eta_speed_kmh, circuity=settings.eta_circuity)
        if settings.gc_freeze:
            freeze_startup_heap()  # as the dispatcher process does once it has started
        waited = [timedelta(seconds=float(w)) for w in requests.waited_s]

        async def measure(
            phase: SizeRun, cycles: int, reset: Callable[[], Awaitable[None]]
        ) -> None:
            for cycle in range(cycles + 1):  # the first of each phase warms caches and code
                await reset()
                await mark_seen(redis, REGION, driver_ids)
                engine_times = batch_cycle.run_cycle(
                    sync_redis,
                    engine_key,
                    engine_requests,
                    matching_settings(settings),
                    eta,
                    f"real-{seed}-{phase.phase}-{cycle}",
                )
                try:
                    with LoopWatch() as watch:
                        report = await run_cycle(state, REGION, settings, eta)
                except Exception as error:  # the code before the fix failed every large batch
                    phase.failures.append(f"{type(error).__name__}: {str(error)[:200]}")
                    print(f"  cycle {cycle} failed: {phase.failures[-1]}", flush=True)
                    continue
                if cycle > 0:
                    phase.engine.append(engine_times)
                    phase.real.append(report)
                    phase.stalls_ms.append(watch.longest_ms)
                print(
                    f"  {n_requests}x{n_drivers} {phase.phase} cycle {cycle}: real "
                    f"{report.cycle_ms:.1f} ms ({report.offers_sent} offers, "
                    f"{report.expired_offers} expired, {report.unfulfilled} given up, loop stall "
                    f"{watch.longest_ms:.1f} ms), engine-only {engine_times.total_ms:.1f} ms "
                    f"({engine_times.matched}); real snapshot {report.snapshot_ms:.0f} "
                    f"plan {report.plan_ms:.0f} write {report.write_ms:.0f} "
                    f"commit {report.commit_ms:.0f} publish {report.publish_ms:.0f}",
                    flush=True,
                )

        async def fresh() -> None:
            await world.reset_batch(ride_ids, waited, utcnow())

        await measure(fresh_run, cycles, fresh)
        await world.reset_batch(ride_ids, waited, utcnow())
        # The steady phase: a co-op's history in the tables, the previous batch's offers run
        # out unanswered (each cycle expires them), and a tenth more requests than the batch
        # have waited past the timeout (each cycle gives them up; the next reopens them).
        started = time.perf_counter()
        riders = await world.riders_of(ride_ids)
        await world.add_history(
            REGION, policy, riders, driver_ids, HISTORY_RIDES, utcnow() - timedelta(minutes=1)
        )
        old = await world.add_requests(
            REGION,
            policy,
            requests.lat[: n_requests // 10].tolist(),
            requests.lng[: n_requests // 10].tolist(),
            now,
        )
        await world.analyze()
        print(f"  history seeded in {time.perf_counter() - started:.1f} s", flush=True)
        given_up_wait = [timedelta(seconds=settings.request_timeout_s + 60)] * len(old)

        async def steady() -> None:
            at = utcnow()
            await world.run_out_offers(at)
            await world.reopen([*ride_ids, *old], [*waited, *given_up_wait], at)

        await measure(steady_run, cycles, steady)
        steady_run.explain = await world.explain_offer_insert(
            _INSERT_OFFERS.text, utcnow(), settings.offer_ttl_s
        )
        sync_redis.delete(engine_key)
        await redis.delete(keys.drivers_geo, keys.drivers_seen)
    finally:
        await conn.close()
        await redis.aclose()
        await engine.dispose()
        sync_redis.close()
        os.environ["COOP_DATABASE_URL"] = base.database_url
        get_settings.cache_clear()
    return [fresh_run, steady_run]


def _p(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _machine() -> list[str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    keep = ("Model name", "CPU(s):", "Thread(s) per core", "Core(s) per socket")
    cpu = [line.strip() for line in lscpu.splitlines() if line.strip().startswith(keep)]
    return [
        "`lscpu`: " + "; ".join(f"`{c}`" for c in cpu),
        f"Python {platform.python_version()}, PostgreSQL and Redis on localhost",
    ]


def render(runs: Sequence[SizeRun], command: str, uptime: tuple[str, str], when: str) -> str:
    lines = [
        "# The real dispatcher cycle",
        "",
        "<!-- Generated by `python -m dispatch.simulation.real_cycle`; do not edit by hand. -->",
        "",
        "`dispatch.dispatcher.cycle.run_cycle`, the production batch, on real PostGIS and Redis:"  # nosec B608: prose of the report, not a query
        " expire offers and give up on old requests, lock the open requests, read the tried "
        "and busy drivers, snapshot the fleet from Redis (`GEOSEARCH ... WITHHASH`), plan "
        "(`plan_batch`, in a worker thread with the array building and offer drafting), write "
        "the offers and their outbox events (one `INSERT ... SELECT unnest(...)` statement), "
        "commit, and publish the events (one pre-packed `EVAL` that `PUBLISH`es each). Beside "
        "it, on the same batch in the same run, the engine-only cycle of "
        "[matching.md](matching.md#batch-cycle-against-the-real-redis) (snapshot, plan, offers "
        "as one Redis hash). The batch geometry is the engine benchmark's (seed 0): requests at "
        "real taxi pickups that have waited 0–60 s, drivers at real Uber pickups. "
        "`fairness_weight` is 0 (the default), so the day's-earnings aggregate is not run. "
        "Two phases per size: `fresh` deletes the previous cycle's offers and events before "
        "each cycle (no expirations, empty history: the best case); `steady` has "
        f"{HISTORY_RIDES:,} completed rides with their accepted offers and four events each in "
        "the tables, lets the previous batch's offers run out unanswered (each cycle expires "
        "them, and their drivers stay excluded from those rides) and keeps a tenth more "
        "requests than the batch waiting past the timeout (each cycle gives them up). The "
        "steady phase's exclusions grow by one driver per ride each cycle (the last cycle "
        "reads one tried driver per ride per cycle before it), more than a co-op's rides "
        "collect before they are given up, so its later cycles are slower than its first. "
        "Expiring is an `UPDATE` of `offer.status`, a column of the partial unique indexes' "
        "predicates, so none of those updates is HOT: each writes a new row version and an "
        "entry in each of `offer`'s five indexes, and its `offer.expired` event.",
        "",
        f"Measured {when}; `uptime` before: `{uptime[0]}`; after: `{uptime[1]}`. "
        f"Command: `{command}`.",
        "",
        *(f"- {m}" for m in _machine()),
        "",
        "| requests × drivers | phase | cycles | real p50 ms | real p99 ms | engine-only p50 ms "
        "| engine-only p99 ms | real ÷ engine (p50) | offers / expired / given up per cycle | "
        "failed cycles | longest loop stall p50 / max ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        real = [r.cycle_ms for r in run.real]
        engine = [c.total_ms for c in run.engine]
        ratio = _p(real, 50) / _p(engine, 50) if real and engine else float("nan")

        def counts(name: str, run: SizeRun = run) -> str:
            return (
                f"{statistics.median(getattr(r, name) for r in run.real):,.0f}" if run.real else "–"
            )

        lines.append(
            f"| {run.n_requests:,} × {run.n_drivers:,} | {run.phase} | {len(real)} | "
            f"{_p(real, 50):.1f} | {_p(real, 99):.1f} | {_p(engine, 50):.1f} | "
            f"{_p(engine, 99):.1f} | {ratio:.1f}× | {counts('offers_sent')} / "
            f"{counts('expired_offers')} / {counts('unfulfilled')} | {len(run.failures)} | "
            f"{_p(run.stalls_ms, 50):.1f} / {max(run.stalls_ms, default=float('nan')):.1f} |"
        )
    lines += [
        "",
        'Against the targets of issue 11.7 (median real cycle; the loop target, "no cycle work '
        f'of more than a few milliseconds on the event loop", read as the longest stall at most '
        f"{STALL_TARGET_MS:.0f} ms in every cycle):",
        "",
        "| requests × drivers | phase | target p50 ms | measured p50 ms | cycle target | "
        "longest stall ms | loop target |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        target = TARGETS_MS.get((run.n_requests, run.n_drivers))
        real_p50 = _p([r.cycle_ms for r in run.real], 50)
        stall = max(run.stalls_ms, default=float("nan"))
        met = "—" if target is None else ("met" if real_p50 <= target else "**not met**")
        loop_met = "met" if stall <= STALL_TARGET_MS else "**not met**"
        lines.append(
            f"| {run.n_requests:,} × {run.n_drivers:,} | {run.phase} | "
            f"{'—' if target is None else f'{target:.0f}'} | {real_p50:.1f} | {met} | "
            f"{stall:.1f} | {loop_met} |"
        )
    lines += [
        "",
        "Where the real cycle's time goes (median ms of each phase; `snapshot` is every read "
        "before planning, expiring and giving up included, `plan` the worker thread, `write` "
        "the offer statement, `commit` the commit, `publish` the events' `EVAL`):",
        "",
        "| requests × drivers | phase | snapshot | plan | write | commit | publish | "
        "of which solve |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:

        def m(name: str, run: SizeRun = run) -> float:
            return statistics.median(getattr(r, name, 0.0) for r in run.real) if run.real else 0.0

        lines.append(
            f"| {run.n_requests:,} × {run.n_drivers:,} | {run.phase} | {m('snapshot_ms'):.1f} | "
            f"{m('plan_ms'):.1f} | {m('write_ms'):.1f} | {m('commit_ms'):.1f} | "
            f"{m('publish_ms'):.1f} | {m('solve_ms'):.1f} |"
        )
    explained = [run for run in runs if run.explain]
    if explained:
        lines += [
            "",
            "Where the offer statement's time goes inside PostgreSQL: `EXPLAIN (ANALYZE, "
            "BUFFERS)` of the same statement after the steady phase, rewriting its last batch "
            "(each offer expired first; rolled back). `made` is the offer insert and the unnest it "
            "reads (speculative "
            "insertion for `ON CONFLICT DO NOTHING` into five indexes, two of them partial "
            "unique), the foreign-key triggers are PostgreSQL's per-row checks of `offer`'s "
            "`driver_id` and `ride_id`, and the rest is the `event` insert (a `jsonb` parse and "
            "a sequence value per row), the unnest and the sorts:",
            "",
            "| requests × drivers | offers | execution ms | `made` (offer insert) ms | "
            "FK triggers ms (calls) | rest ms |",
            "|---|---|---|---|---|---|",
        ]
        for run in explained:
            plan = run.explain
            made = _cte_ms(plan["Plan"], "CTE made")
            triggers = sum(t["Time"] for t in plan.get("Triggers", []))
            calls = " + ".join(
                f"{t['Time']:.1f} ({t['Calls']:,})" for t in plan.get("Triggers", [])
            )
            execution = plan["Execution Time"]
            lines.append(
                f"| {run.n_requests:,} × {run.n_drivers:,} | {plan['offers']:,} | "
                f"{execution:.1f} | {made:.1f} | {calls} | {execution - made - triggers:.1f} |"
            )
    failures = [f for run in runs for f in run.failures]
    if failures:
        lines += ["", "Failures:", "", *(f"- `{f}`" for f in sorted(set(failures)))]
    lines += [
        "",
        "The longest loop stall is the longest the event loop went without running a 2 ms "
        "ticker task during the cycle: what an API sharing the process (`coop-dispatch serve`) "
        "waits at worst. Planning in a thread holds the GIL in slices (5 ms by default), so "
        "the loop still gets turns.",
        "",
    ]
    return "\n".join(lines)


def _cte_ms(node: dict[str, Any], name: str) -> float:
    """Actual total time of the plan node named `name` (a CTE), 0 if there is none."""
    if node.get("Subplan Name") == name:
        return float(node["Actual Total Time"])
    return max((_cte_ms(child, name) for child in node.get("Plans", [])), default=0.0)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


async def _main(args: argparse.Namespace) -> int:
    before = _uptime()
    when = time.strftime("%F %T %Z")
    runs = []
    sizes: tuple[tuple[int, int, int], ...] = SIZES
    if args.size:
        n_requests, n_drivers = (int(n) for n in args.size.split("x"))
        sizes = ((n_requests, n_drivers, args.cycles or 5),)
    for n_requests, n_drivers, cycles in sizes:
        print(f"real cycle {n_requests} x {n_drivers}", flush=True)
        runs += await measure_size(n_requests, n_drivers, args.cycles or cycles, args.data)
    after = _uptime()
    command = "flock /tmp/coop-bench.lock python -m dispatch.simulation.real_cycle" + (
        f" --cycles {args.cycles}" if args.cycles else ""
    )
    text = render(runs, command, (before, after), when)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dispatch.simulation.real_cycle", description=__doc__
    )
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--cycles", type=int, help="cycles of each phase per size (default 10 and 5)"
    )
    parser.add_argument("--size", help="one size only, e.g. 2000x10000 (not for the report)")
    args = parser.parse_args(argv)
    args.data = args.data.resolve()
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
