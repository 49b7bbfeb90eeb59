"""The dispatcher role: a batch per region every interval. Run as many as you like."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from dispatch.core.database import SessionSource, transaction
from dispatch.core.settings import Settings
from dispatch.dispatcher.cycle import CycleReport, run_cycle
from dispatch.fares.repository import FareRepository
from dispatch.matching.eta import EtaModel

log = logging.getLogger(__name__)

REGIONS_RELOAD_S = 60.0

# Told of every region's cycle (the process's metrics).
CycleHook = Callable[[CycleReport], None]


@dataclass(frozen=True)
class PeriodicJob:
    """Work a dispatcher process runs between its batches (closing proposals, purging keys).

    The jobs are chosen where the process is assembled (`dispatch.entrypoints`), so the engine
    does not import the packages that use it. A job that raises is logged and run again on its
    next turn; `every_s` 0 runs it on every turn of the loop.
    """

    name: str
    run: Callable[[SessionSource], Awaitable[object]]
    every_s: float = 0.0


async def region_ids(state: SessionSource) -> list[str]:
    async with transaction(state) as session:
        return await FareRepository(session).region_ids()


async def dispatch_forever(
    state: SessionSource,
    settings: Settings,
    eta: EtaModel,
    jobs: Sequence[PeriodicJob] = (),
    on_cycle: CycleHook | None = None,
) -> None:
    regions: list[str] = []
    regions_loaded = 0.0
    last_run = {job.name: float("-inf") for job in jobs}
    while True:
        started = time.monotonic()
        try:
            if started - regions_loaded > REGIONS_RELOAD_S or not regions:
                regions = await region_ids(state)
                regions_loaded = started
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
            observe(report, on_cycle)
        for job in jobs:
            if time.monotonic() - last_run[job.name] >= job.every_s:
                last_run[job.name] = time.monotonic()
                await _run_job(state, job)
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(0.05, settings.batch_interval_s - elapsed))


async def _run_job(state: SessionSource, job: PeriodicJob) -> None:
    try:
        await job.run(state)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("periodic job %s failed; retrying on its next turn", job.name)


def observe(report: CycleReport, on_cycle: CycleHook | None) -> None:
    if on_cycle is not None:
        on_cycle(report)
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
