"""Slow and broken networks, through the fault proxy (tests/reliability/proxy.py).

Between a client and the API, between the app and PostgreSQL, between the app and Redis: what
each fault does to a user is written down in docs/reliability.md, and checked here.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from dispatch.core.database import transaction
from dispatch.events.models import Event
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, Account, app_client, bearer
from tests.e2e.harness import running_stack
from tests.fixtures.dispatching import quote_for, ride_for
from tests.fixtures.regions import CENTER, E2E_CENTER
from tests.reliability.conftest import bulk_accounts, record_figures
from tests.reliability.processes import e2e_region
from tests.reliability.proxy import fault_proxy

FIGURES: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def app_behind(app: Any, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own (engine, pool, Redis client) with the given settings."""
    async with app_client(app.state.settings.model_copy(update=settings)) as http:
        yield http


async def timed_quote(http: httpx.AsyncClient, rider: Account) -> tuple[int, float]:
    body = {
        "pickup": {"lat": CENTER[0], "lng": CENTER[1]},
        "dropoff": {"lat": CENTER[0] + 0.02, "lng": CENTER[1] + 0.02},
    }
    started = time.monotonic()
    response = await http.post("/v1/rider/quotes", json=body, headers=rider.headers)
    elapsed = time.monotonic() - started
    if response.status_code == 503:
        assert response.headers["Retry-After"]
    return response.status_code, round(elapsed, 2)


async def test_app_to_postgres(app: Any, region: str) -> None:
    (rider,) = await bulk_accounts(app, "rider", 1)
    target = urlsplit(TEST_DATABASE_URL)
    assert target.hostname and target.port
    async with fault_proxy(target.hostname, target.port) as proxy:
        url = TEST_DATABASE_URL.replace(f":{target.port}/", f":{proxy.port}/")
        async with app_behind(
            app, database_url=url, database_command_timeout_s=2.0, database_connect_timeout_s=2.0
        ) as http:
            figures: dict[str, Any] = {"clean": await timed_quote(http, rider)}
            assert figures["clean"][0] == 201

            proxy.delay(0.05)  # 50 ms each way on every round trip
            figures["delay_50ms"] = await timed_quote(http, rider)
            assert figures["delay_50ms"][0] == 201
            proxy.heal()

            proxy.reset()  # PostgreSQL gone: open connections reset, new ones refused
            figures["reset"] = await timed_quote(http, rider)
            assert figures["reset"][0] == 503
            proxy.heal()
            figures["reset_healed"] = await timed_quote(http, rider)
            assert figures["reset_healed"][0] == 201

            proxy.half_open()  # pooled connections silently dead: time out, not hang
            figures["half_open"] = await timed_quote(http, rider)
            assert figures["half_open"][0] in (201, 503)  # pre-ping may reconnect first
            assert figures["half_open"][1] < 10
            proxy.heal()
            figures["half_open_healed"] = await timed_quote(http, rider)
            assert figures["half_open_healed"][0] == 201

            proxy.drop()  # everything black-holed, even new connections
            figures["drop"] = await timed_quote(http, rider)
            assert figures["drop"][0] == 503 and figures["drop"][1] < 10
            proxy.heal()
            figures["drop_healed"] = await timed_quote(http, rider)
            assert figures["drop_healed"][0] == 201
    FIGURES["app_to_postgres"] = {k: {"status": s, "seconds": t} for k, (s, t) in figures.items()}
    record_figures("network_faults", FIGURES)


async def ride_and_cancel(http: httpx.AsyncClient, rider: Account) -> None:
    quote_id = await quote_for(http, rider)
    ride = await http.post("/v1/rider/rides", json={"quote_id": quote_id}, headers=rider.headers)
    assert ride.status_code == 201, ride.text
    cancel = await http.post(f"/v1/rider/rides/{ride.json()['id']}/cancel", headers=rider.headers)
    assert cancel.status_code == 200, cancel.text


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(("clean", "delay", "reset"), id="default"),
        # A silent Redis costs commands their socket timeouts (5-10 s each): long run only.
        pytest.param(("half_open", "drop"), id="silent", marks=pytest.mark.long),
    ],
)
async def test_app_to_redis(app: Any, region: str, faults: tuple[str, ...]) -> None:
    """Ride actions do not need Redis to succeed: state is in PostgreSQL, events in its log."""
    (rider,) = await bulk_accounts(app, "rider", 1)
    (driver,) = await bulk_accounts(app, "driver", 1)
    target = urlsplit(TEST_REDIS_URL)
    assert target.hostname and target.port
    figures: dict[str, Any] = {}
    async with fault_proxy(target.hostname, target.port) as proxy:
        url = TEST_REDIS_URL.replace(f":{target.port}/", f":{proxy.port}/")
        async with app_behind(app, redis_url=url) as http:
            for fault in faults:
                # Warm up first, so a fault hits connections that are in use (pool and pub/sub).
                await ride_and_cancel(http, rider)
                if fault == "delay":
                    proxy.delay(0.1)
                elif fault == "reset":
                    proxy.reset()
                elif fault == "half_open":
                    proxy.half_open()
                elif fault == "drop":
                    proxy.drop()
                quote_id = await quote_for(http, rider)
                started = time.monotonic()
                ride = await http.post(
                    "/v1/rider/rides", json={"quote_id": quote_id}, headers=rider.headers
                )
                took = round(time.monotonic() - started, 2)
                assert ride.status_code == 201, (fault, ride.text)
                cancel = await http.post(
                    f"/v1/rider/rides/{ride.json()['id']}/cancel", headers=rider.headers
                )
                assert cancel.status_code == 200, (fault, cancel.text)
                # Going offline must clear the driver from Redis: refused cleanly if it can't.
                offline = await http.post(
                    "/v1/driver/status", json={"status": "offline"}, headers=driver.headers
                )
                assert offline.status_code in (200, 503), offline.text
                figures[fault] = {
                    "ride_request": ride.status_code,
                    "ride_request_s": took,
                    "go_offline": offline.status_code,
                }
                proxy.heal()
    FIGURES.setdefault("app_to_redis", {}).update(figures)
    record_figures("network_faults", FIGURES)


@pytest.mark.e2e
async def test_client_to_api(tmp_path: Path, app: Any) -> None:
    """Answers lost on the way back: the retry with the same key gets the first answer."""
    lat, lng = E2E_CENTER
    figures: dict[str, Any] = {}
    async with e2e_region(app) as region:
        with running_stack(tmp_path, region=region) as stack:
            api = stack.start_api("api").url
            assert api
            port = int(api.rsplit(":", 1)[1])
            (rider,) = await bulk_accounts(app, "rider", 1)
            async with fault_proxy("127.0.0.1", port) as proxy:
                base = f"http://127.0.0.1:{proxy.port}"
                async with httpx.AsyncClient(base_url=base, timeout=2.0) as http:
                    proxy.delay(0.2)
                    started = time.monotonic()
                    ride_id = await ride_for(http, rider, lat, lng)
                    figures["delay_200ms_quote_and_request_s"] = round(
                        time.monotonic() - started, 2
                    )
                    proxy.heal()

                    proxy.half_open("downstream")  # the cancel arrives; its answer never does
                    key = {"Idempotency-Key": uuid.uuid4().hex}
                    path = f"/v1/rider/rides/{ride_id}/cancel"
                    with pytest.raises(httpx.TimeoutException):
                        await http.post(path, headers=bearer(rider.token) | key)
                    proxy.heal()
                    retry = await http.post(path, headers=bearer(rider.token) | key)
                    assert retry.status_code == 200, retry.text
                    assert retry.headers.get("Idempotent-Replayed") == "true"
                    assert retry.json()["status"] == "cancelled"
                    async with transaction(app.state) as session:
                        cancelled_events = await session.scalar(
                            select(func.count()).where(
                                Event.ride_id == uuid.UUID(ride_id), Event.type == "ride.cancelled"
                            )
                        )
                    assert cancelled_events == 1
                    figures["lost_answer_then_retry"] = "200 replayed, one cancellation"

                    proxy.reset()
                    with pytest.raises(httpx.TransportError):
                        await http.get("/v1/rider/rides", headers=bearer(rider.token))
                    proxy.heal()
                    again = await http.get("/v1/rider/rides", headers=bearer(rider.token))
                    assert again.status_code == 200
                    figures["reset"] = "connection error, next request fine"
    FIGURES["client_to_api"] = figures
    record_figures("network_faults", FIGURES)
