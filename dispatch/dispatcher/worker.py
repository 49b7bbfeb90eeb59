"""The dispatcher role: a batch per region every interval. Run as many as you like."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import select

from dispatch.core.database import transaction
from dispatch.core.settings import Settings
from dispatch.dispatcher.cycle import CycleReport, run_cycle
from dispatch.fares.models import Region
from dispatch.idempotency.tasks import purge_expired_keys
from dispatch.matching.eta import EtaModel
from governance.tasks import governance_tick

log = logging.getLogger(__name__)


async def region_ids(state: Any) -> list[str]:
    async with transaction(state) as session:
        return list((await session.execute(select(Region.id).order_by(Region.id))).scalars())


async def dispatch_forever(state: Any, settings: Settings, eta: EtaModel) -> None:
    regions: list[str] = []
    regions_loaded = 0.0
    while True:
        started = time.monotonic()
        try:
            if started - regions_loaded > 60 or not regions:
                regions = await region_ids(state)
                regions_loaded = started
                await purge_expired_keys(state, settings.idempotency_key_ttl_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not list the regions; retrying next interval")
        for region in regions:
            # Each region on its own: one region's failing batch once stopped every region
            # listed after it, every interval.
            try:
                report = await run_cycle(state, region, settings, eta)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch cycle failed for region %s; retrying next interval", region)
                continue
            observe(state, report)
        await governance_tick(state)  # opens and closes due proposals; never raises
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(0.05, settings.batch_interval_s - elapsed))


def observe(state: Any, report: CycleReport) -> None:
    hook = getattr(state, "on_cycle", None)
    if hook is not None:
        hook(report)
    if report.offers_sent or report.unfulfilled or report.expired_offers:
        log.info(
            "region=%s open=%d drivers=%d offers=%d expired=%d unfulfilled=%d "
            "solve_ms=%.1f cycle_ms=%.1f",
            report.region,
            report.open_requests,
            report.drivers_available,
            report.offers_sent,
            report.expired_offers,
            report.unfulfilled,
            report.solve_ms,
            report.cycle_ms,
        )
