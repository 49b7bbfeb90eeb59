"""One dispatch batch for one region: expire, give up, snapshot, plan, offer.

Orchestration only: the statements are `DispatchRepository`'s, the lifecycle rules
`dispatch.rides.service`'s, the matching `plan_batch`'s. What costs CPU in proportion to the
batch (building the arrays, planning, formatting offers) runs in a worker thread, so an API that
shares the event loop (`coop-dispatch serve`) keeps answering during a batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import Row

from dispatch.core.clock import utcnow
from dispatch.core.database import SessionSource, after_commit, transaction
from dispatch.core.redis import RegionKeys
from dispatch.core.settings import Settings
from dispatch.dispatcher import presence
from dispatch.matching import DriverSnapshot, MatchingSettings, RequestBatch, plan_batch
from dispatch.matching.eta import EtaModel
from dispatch.rides import service
from dispatch.rides.repository import DispatchRepository, OpenRequest

log = logging.getLogger(__name__)


@dataclass
class CycleReport:
    region: str
    ran: bool = True
    expired_offers: int = 0
    unfulfilled: int = 0
    open_requests: int = 0
    drivers_available: int = 0
    offers_sent: int = 0
    candidate_edges: int = 0
    solve_ms: float = 0.0
    cycle_ms: float = 0.0
    # Where the cycle's time went: reads (PostgreSQL and Redis), the planning thread, the offer
    # write, the commit, and publishing the events after it.
    snapshot_ms: float = 0.0
    plan_ms: float = 0.0
    write_ms: float = 0.0
    commit_ms: float = 0.0
    publish_ms: float = 0.0
    offered: list[tuple[str, str]] = field(default_factory=list)


def region_lock_key(region: str) -> int:
    return zlib.crc32(f"coop-dispatch:{region}".encode()) & 0x7FFFFFFF


def matching_settings(settings: Settings) -> MatchingSettings:
    return MatchingSettings(
        radius_schedule_m=settings.radius_schedule_m,
        max_pickup_eta_s=settings.max_pickup_eta_s,
        fairness_weight=settings.fairness_weight,
    )


@dataclass(frozen=True)
class _Snapshot:
    requests: Sequence[OpenRequest]
    tried: Sequence[Row[str, list[str]]]
    positions: presence.DriverPositions
    busy: set[str]
    earned: Sequence[Row[uuid.UUID, int | None, datetime | None]]
    now: datetime


@dataclass(frozen=True)
class _Planned:
    drivers_available: int
    candidate_edges: int = 0
    solve_ms: float = 0.0
    offers: service.OfferBatch | None = None


async def run_cycle(
    state: SessionSource, region: str, settings: Settings, eta: EtaModel
) -> CycleReport:
    started = time.perf_counter()
    report = CycleReport(region=region)
    keys = RegionKeys(region)
    marks: dict[str, float] = {}

    async def committed() -> None:
        marks["committed"] = time.perf_counter()

    async with transaction(state) as session:
        after_commit(session, committed)  # first: runs before the events are published
        repository = DispatchRepository(session)
        if not await repository.try_region_lock(region_lock_key(region)):
            report.ran = False
            return report
        now = utcnow()
        report.expired_offers = await service.expire_offers(session, region, now)
        report.unfulfilled = await service.give_up_requests(
            session, region, now, settings.request_timeout_s
        )
        requests = await repository.open_requests(region)
        report.open_requests = len(requests)
        marks["planned"] = marks["written"] = marks["read"] = time.perf_counter()
        if not requests:
            await presence.prune_silent(state.redis, keys, settings.driver_silence_s)
        else:
            # Redis answers while PostgreSQL does.
            fleet = asyncio.create_task(_fleet(state, keys, settings))
            try:
                tried = await repository.tried_drivers([r.id for r in requests])
                busy = await repository.busy_drivers()
                # Used only to weigh fairness: a scan of the day's rides otherwise wasted.
                earned = (
                    await repository.earnings_since(
                        now.replace(hour=0, minute=0, second=0, microsecond=0)
                    )
                    if settings.fairness_weight > 0
                    else ()
                )
            except BaseException:
                fleet.cancel()
                raise
            snapshot = _Snapshot(requests, tried, await fleet, busy, earned, now)
            marks["read"] = time.perf_counter()
            planned = await asyncio.to_thread(_plan, snapshot, eta, settings)
            marks["planned"] = time.perf_counter()
            report.drivers_available = planned.drivers_available
            report.candidate_edges = planned.candidate_edges
            report.solve_ms = planned.solve_ms
            if planned.offers is not None:
                report.offered = await service.make_offers(session, planned.offers)
                report.offers_sent = len(report.offered)
                await _forget_ghosts(state, keys, repository, planned.offers, report.offered)
            marks["written"] = time.perf_counter()
    finished = time.perf_counter()
    report.snapshot_ms = (marks["read"] - started) * 1000
    report.plan_ms = (marks["planned"] - marks["read"]) * 1000
    report.write_ms = (marks["written"] - marks["planned"]) * 1000
    report.commit_ms = (marks["committed"] - marks["written"]) * 1000
    report.publish_ms = (finished - marks["committed"]) * 1000
    report.cycle_ms = (finished - started) * 1000
    return report


async def _fleet(
    state: SessionSource, keys: RegionKeys, settings: Settings
) -> presence.DriverPositions:
    await presence.prune_silent(state.redis, keys, settings.driver_silence_s)
    return await presence.snapshot(state.redis, keys)


async def _forget_ghosts(
    state: SessionSource,
    keys: RegionKeys,
    repository: DispatchRepository,
    drafted: service.OfferBatch,
    offered: Sequence[tuple[str, str]],
) -> None:
    """A position can outlive its driver's account (deleted while its socket streams): the
    insert skips its offer, and without this the planner gave it the nearest ride every cycle.
    Only offers not made are looked at, so a batch without one costs nothing."""
    skipped = set(drafted.driver_ids).difference(driver_id for _, driver_id in offered)
    if skipped:
        ghosts = await repository.without_driver_row(skipped)
        if ghosts:
            await presence.forget(state.redis, keys, ghosts)


def _plan(snapshot: _Snapshot, eta: EtaModel, settings: Settings) -> _Planned:
    """Arrays for the engine, the plan, and its offers drafted (a worker thread runs this)."""
    requests = _request_batch(snapshot)
    drivers = _driver_snapshot(snapshot)
    if not drivers.driver_ids:
        return _Planned(drivers_available=0)
    plan = plan_batch(requests, drivers, eta, matching_settings(settings))
    rides = dict(zip(requests.ride_ids, snapshot.requests, strict=True))
    offers = service.draft_offers(
        [(a.ride_id, a.driver_id, a.eta_s) for a in plan.assignments],
        rides,
        snapshot.now,
        settings.offer_ttl_s,
    )
    return _Planned(
        drivers_available=len(drivers.driver_ids),
        candidate_edges=plan.candidate_edges,
        solve_ms=plan.solve_ms,
        offers=offers,
    )


def _request_batch(snapshot: _Snapshot) -> RequestBatch:
    ids, lat, lng, requested_at, *_ = zip(*snapshot.requests, strict=True)
    ride_ids = [str(ride_id) for ride_id in ids]
    excluded: dict[str, set[str]] = {ride_id: set() for ride_id in ride_ids}
    for ride_id, driver_ids in snapshot.tried:
        excluded[ride_id].update(driver_ids)
    return RequestBatch(
        ride_ids=ride_ids,
        lat=np.array(lat, dtype=np.float64),
        lng=np.array(lng, dtype=np.float64),
        # Never negative: `requested_at` comes from an API process whose clock may run a little
        # ahead of this one, and a negative wait has no search radius (the batch failed).
        waited_s=np.maximum(
            0.0,
            np.array([(snapshot.now - t).total_seconds() for t in requested_at], dtype=np.float64),
        ),
        excluded=[frozenset(excluded[ride_id]) for ride_id in ride_ids],
    )


def _driver_snapshot(snapshot: _Snapshot) -> DriverSnapshot:
    positions, busy, now = snapshot.positions, snapshot.busy, snapshot.now
    keep = np.array([d not in busy for d in positions.driver_ids], dtype=bool)
    ids = [d for d, k in zip(positions.driver_ids, keep, strict=True) if k]
    earned = np.zeros(len(ids), dtype=np.float64)
    idle = np.zeros(len(ids), dtype=np.float64)
    if snapshot.earned:
        index = {d: i for i, d in enumerate(ids)}
        for driver_id, cents, last_end in snapshot.earned:
            i = index.get(str(driver_id))
            if i is not None:
                earned[i] = float(cents or 0)
                idle[i] = (now - last_end).total_seconds() if last_end else 0.0
    return DriverSnapshot(
        driver_ids=ids,
        lat=positions.lat[keep],
        lng=positions.lng[keep],
        idle_s=idle,
        earned_cents=earned,
    )
