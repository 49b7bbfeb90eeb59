"""One dispatch batch for one region: expire, give up, snapshot, plan, offer."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.clock import utcnow
from dispatch.core.database import transaction
from dispatch.core.redis import RegionKeys
from dispatch.core.settings import Settings
from dispatch.dispatcher import presence
from dispatch.events.outbox import record_event
from dispatch.matching import DriverSnapshot, MatchingSettings, RequestBatch, plan_batch
from dispatch.matching.eta import EtaModel
from dispatch.rides import events
from dispatch.rides.models import ACTIVE_STATUSES, Offer, OfferStatus, Ride, RideStatus

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
    offered: list[tuple[str, str]] = field(default_factory=list)


def region_lock_key(region: str) -> int:
    return zlib.crc32(f"coop-dispatch:{region}".encode()) & 0x7FFFFFFF


def matching_settings(settings: Settings) -> MatchingSettings:
    return MatchingSettings(
        radius_schedule_m=settings.radius_schedule_m,
        max_pickup_eta_s=settings.max_pickup_eta_s,
        fairness_weight=settings.fairness_weight,
    )


async def run_cycle(state: Any, region: str, settings: Settings, eta: EtaModel) -> CycleReport:
    started = time.perf_counter()
    report = CycleReport(region=region)
    keys = RegionKeys(region)
    async with transaction(state) as session:
        locked = await session.scalar(
            select(func.pg_try_advisory_xact_lock(region_lock_key(region)))
        )
        if not locked:
            report.ran = False
            return report
        now = utcnow()
        report.expired_offers = await _expire_offers(session, region, now)
        report.unfulfilled = await _give_up(session, region, now, settings.request_timeout_s)
        await presence.prune_silent(state.redis, keys, settings.driver_silence_s)
        requests = await _open_requests(session, region, now)
        report.open_requests = len(requests.ride_ids)
        if requests.ride_ids:
            drivers = await _available_drivers(session, state, keys, now)
            report.drivers_available = len(drivers.driver_ids)
            if drivers.driver_ids:
                plan = await asyncio.to_thread(
                    plan_batch, requests, drivers, eta, matching_settings(settings)
                )
                report.candidate_edges = plan.candidate_edges
                report.solve_ms = plan.solve_ms
                report.offered = await _make_offers(
                    session,
                    [(a.ride_id, a.driver_id, a.eta_s) for a in plan.assignments],
                    now,
                    settings.offer_ttl_s,
                )
                report.offers_sent = len(report.offered)
    report.cycle_ms = (time.perf_counter() - started) * 1000
    return report


async def _expire_offers(session: AsyncSession, region: str, now: Any) -> int:
    query = (
        update(Offer)
        .where(
            Offer.status == OfferStatus.pending,
            Offer.expires_at <= now,
            Offer.ride_id.in_(select(Ride.id).where(Ride.region_id == region)),
        )
        .values(status=OfferStatus.expired, responded_at=now)
        .returning(Offer.id, Offer.driver_id, Offer.ride_id)
    )
    rows = (await session.execute(query)).all()
    for offer_id, driver_id, ride_id in rows:
        record_event(session, driver_id, "offer.expired", {"offer_id": str(offer_id)}, ride_id)
    return len(rows)


def _pending_offer_for(ride_id: Any) -> Any:
    return exists().where(and_(Offer.ride_id == ride_id, Offer.status == OfferStatus.pending))


async def _give_up(session: AsyncSession, region: str, now: Any, timeout_s: float) -> int:
    query = (
        update(Ride)
        .where(
            Ride.region_id == region,
            Ride.status == RideStatus.requested,
            Ride.requested_at <= now - timedelta(seconds=timeout_s),
            ~_pending_offer_for(Ride.id),
        )
        .values(status=RideStatus.unfulfilled, ended_at=now)
        .returning(Ride.id, Ride.rider_id)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(query)).all()
    for ride_id, rider_id in rows:
        payload = {"status": "unfulfilled", "reason": "no driver accepted in time"}
        record_event(session, rider_id, "ride.unfulfilled", payload, ride_id)
    return len(rows)


async def _open_requests(session: AsyncSession, region: str, now: Any) -> RequestBatch:
    query = (
        select(Ride.id, Ride.pickup_lat, Ride.pickup_lng, Ride.requested_at)
        .where(
            Ride.region_id == region,
            Ride.status == RideStatus.requested,
            ~_pending_offer_for(Ride.id),
        )
        .order_by(Ride.requested_at)
        .with_for_update(skip_locked=True)
    )
    rows = (await session.execute(query)).all()
    ride_ids = [row.id for row in rows]
    excluded: dict[uuid.UUID, set[str]] = {ride_id: set() for ride_id in ride_ids}
    if ride_ids:
        tried = select(Offer.ride_id, Offer.driver_id).where(
            Offer.ride_id.in_(ride_ids), Offer.status != OfferStatus.pending
        )
        for ride_id, driver_id in (await session.execute(tried)).all():
            excluded[ride_id].add(str(driver_id))
    return RequestBatch(
        ride_ids=[str(ride_id) for ride_id in ride_ids],
        lat=np.array([row.pickup_lat for row in rows], dtype=np.float64),
        lng=np.array([row.pickup_lng for row in rows], dtype=np.float64),
        # Never negative: `requested_at` comes from an API process whose clock may run a little
        # ahead of this one, and a negative wait has no search radius (the batch failed).
        waited_s=np.maximum(
            0.0,
            np.array([(now - row.requested_at).total_seconds() for row in rows], dtype=np.float64),
        ),
        excluded=[frozenset(excluded[ride_id]) for ride_id in ride_ids],
    )


async def _available_drivers(
    session: AsyncSession, state: Any, keys: RegionKeys, now: Any
) -> DriverSnapshot:
    positions = await presence.snapshot(state.redis, keys)
    busy_offers = select(Offer.driver_id).where(Offer.status == OfferStatus.pending)
    busy_rides = select(Ride.driver_id).where(
        Ride.status.in_(ACTIVE_STATUSES), Ride.driver_id.is_not(None)
    )
    busy = {str(d) for d in (await session.execute(busy_offers.union(busy_rides))).scalars()}
    keep = np.array([d not in busy for d in positions.driver_ids], dtype=bool)
    ids = [d for d, k in zip(positions.driver_ids, keep, strict=True) if k]
    earned = np.zeros(len(ids), dtype=np.float64)
    idle = np.zeros(len(ids), dtype=np.float64)
    if ids:
        since = now.replace(hour=0, minute=0, second=0, microsecond=0)
        day = (
            select(Ride.driver_id, func.sum(Ride.driver_cents), func.max(Ride.ended_at))
            .where(Ride.status == RideStatus.completed, Ride.ended_at >= since)
            .group_by(Ride.driver_id)
        )
        index = {d: i for i, d in enumerate(ids)}
        for driver_id, cents, last_end in (await session.execute(day)).all():
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


async def _make_offers(
    session: AsyncSession, assignments: list[tuple[str, str, int]], now: Any, ttl_s: float
) -> list[tuple[str, str]]:
    if not assignments:
        return []
    expires_at = now + timedelta(seconds=ttl_s)
    rows = [
        {
            "id": uuid.uuid4(),
            "ride_id": uuid.UUID(ride_id),
            "driver_id": uuid.UUID(driver_id),
            "status": OfferStatus.pending,
            "eta_s": int(eta_s),
            "created_at": now,
            "expires_at": expires_at,
        }
        for ride_id, driver_id, eta_s in assignments
    ]
    inserted = (
        (
            await session.execute(
                insert(Offer).values(rows).on_conflict_do_nothing().returning(Offer.id)
            )
        )
        .scalars()
        .all()
    )
    made = set(inserted)
    rides = {
        ride.id: ride
        for ride in (
            await session.execute(select(Ride).where(Ride.id.in_([r["ride_id"] for r in rows])))
        ).scalars()
    }
    offered = []
    for row in rows:
        if row["id"] not in made:
            continue
        offer = Offer(**row)
        events.offer_made(session, offer, rides[row["ride_id"]])
        offered.append((str(row["ride_id"]), str(row["driver_id"])))
    return offered
