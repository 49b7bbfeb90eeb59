"""One region's failing dispatch cycle must not stop the others' (one loop serves them all)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from dispatch.core.settings import Settings
from dispatch.dispatcher import worker
from dispatch.dispatcher.cycle import CycleReport
from dispatch.matching.eta import EtaModel
from tests.fixtures.dispatching import current_offer, online_driver, request_ride
from tests.fixtures.regions import CENTER


async def test_a_failing_region_does_not_stop_the_next(
    client: httpx.AsyncClient, app: Any, region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = "0-broken"  # sorts before every other region id
    real_cycle = worker.run_cycle
    failures: list[str] = []

    async def run_cycle(state: Any, name: str, settings: Settings, eta: EtaModel) -> CycleReport:
        if name == broken:
            failures.append(name)
            raise RuntimeError("this region's batch has a poisoned row")
        return await real_cycle(state, name, settings, eta)

    async def region_ids(state: Any) -> list[str]:
        return [broken, region]

    monkeypatch.setattr(worker, "run_cycle", run_cycle)
    monkeypatch.setattr(worker, "region_ids", region_ids)
    driver = await online_driver(client, app, region, *CENTER)
    _, ride_id = await request_ride(client)
    loop = asyncio.create_task(
        worker.dispatch_forever(app.state, app.state.settings, app.state.eta)
    )
    try:
        for _ in range(100):
            offer = await current_offer(client, driver)
            if offer is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert failures, "the broken region was dispatched too"
    assert offer is not None and offer["ride_id"] == ride_id
