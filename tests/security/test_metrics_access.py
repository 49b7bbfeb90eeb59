"""`/metrics` shows live business figures (rides and offers by status, drivers online): it answers
only to the metrics token, on the API and on a dispatcher's own port (issue 18.12)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.core.settings import Settings
from dispatch.metrics import start_dispatcher_metrics
from tests.conftest import METRICS_HEADERS, Account
from tests.e2e.harness import free_port, running_stack

FIGURES = ("coop_rides", "coop_offers", "coop_drivers_online")


async def test_api_metrics_need_the_token(
    client: httpx.AsyncClient, rider: Account, driver: Account
) -> None:
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "metrics_token_required"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    for headers in (
        rider.headers,
        driver.headers,
        {"Authorization": METRICS_HEADERS["Authorization"] + "x"},
        {"Authorization": METRICS_HEADERS["Authorization"].removeprefix("Bearer ")},
    ):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 403 and refused.json()["error"] == "bad_metrics_token"
        assert not any(name in refused.text for name in FIGURES)
    allowed = await client.get("/metrics", headers=METRICS_HEADERS)
    assert allowed.status_code == 200
    assert all(name in allowed.text for name in FIGURES)


async def test_api_metrics_without_a_configured_token_are_not_served(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "metrics_token", "")
    for headers in ({}, METRICS_HEADERS, {"Authorization": "Bearer "}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"] == "metrics_disabled"
        assert "COOP_METRICS_TOKEN" in refused.json()["detail"]


def test_a_short_metrics_token_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        Settings(metrics_token="short")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_dispatcher_metrics_need_the_token_and_stay_local_without_one() -> None:
    token = METRICS_HEADERS["Authorization"].removeprefix("Bearer ")
    port = free_port()
    start_dispatcher_metrics("127.0.0.1", port, token=token)
    url = f"http://127.0.0.1:{port}/metrics"

    def get(**headers: Any) -> httpx.Response:
        return httpx.get(url, headers=headers, timeout=5)

    anonymous = await asyncio.to_thread(get)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "metrics_token_required"
    wrong = await asyncio.to_thread(get, Authorization="Bearer not-the-token-at-all")
    assert wrong.status_code == 403 and wrong.json()["error"] == "bad_metrics_token"
    allowed = await asyncio.to_thread(get, **METRICS_HEADERS)
    assert allowed.status_code == 200 and "coop_dispatch_cycles" in allowed.text

    # No token: served on a loopback address only, never on every interface.
    local, everywhere = free_port(), free_port()
    start_dispatcher_metrics("127.0.0.1", local, token="")
    start_dispatcher_metrics("0.0.0.0", everywhere, token="")
    assert _listening(local) and not _listening(everywhere)


async def test_a_dispatcher_process_serves_its_metrics_to_the_token_only(
    tmp_path: Path,
) -> None:
    """Through `coop-dispatch dispatcher` itself: its main once dropped the token on the way
    to the metrics server, which then served every local caller (found in review)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with running_stack(tmp_path, dispatcher_metrics_port=str(port)) as stack:
        dispatcher = stack.start_dispatcher("dispatcher-metrics")

        def get(**headers: Any) -> httpx.Response | None:
            try:
                return httpx.get(url, headers=headers, timeout=2)
            except httpx.HTTPError:
                return None

        for _ in range(150):
            allowed = await asyncio.to_thread(get, **METRICS_HEADERS)
            # Its cycles reach the metrics too (the worker's on_cycle hook).
            if allowed is not None and "coop_dispatch_cycles_total{" in allowed.text:
                break
            assert dispatcher.popen.poll() is None, dispatcher.log.read_text()
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"no cycle metrics from the dispatcher at {url}")
        assert allowed.status_code == 200
        anonymous = await asyncio.to_thread(get)
        assert anonymous is not None and anonymous.status_code == 401
        assert anonymous.json()["error"] == "metrics_token_required"
