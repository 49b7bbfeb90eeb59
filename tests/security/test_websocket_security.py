"""WebSockets against a real API process: every message type against every role, message floods,
the Origin allow-list, where a driver's position may go, and what reaches the logs.

The world (rides, offers, members) is built in-process on the same database and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import websockets

from dispatch.core.redis import RegionKeys
from dispatch.realtime.connection import origin_allowed
from driver_api.endpoints import DRIVER_MESSAGES
from tests.conftest import bearer
from tests.e2e.harness import (
    Socket,
    Stack,
    frames_until_close,
    raw_websocket,
    running_stack,
    text_frame,
)
from tests.fixtures.regions import retire_region
from tests.security.world import World, build_world, state_fingerprint

pytestmark = pytest.mark.e2e

ALLOWED_ORIGIN = "https://app.coop.example"
# Distinctive coordinates, so a log line that carries one can be found.
LAT0, LNG0 = 35.123457, 36.234568
PICKUP = (f"{LAT0 + 0.5:.4f}", f"{LNG0 + 0.5:.4f}")
DROPOFF = (f"{LAT0 + 0.55:.4f}", f"{LNG0 + 0.55:.4f}")
DRIVER_FIX = (35.611113, 36.722229)
DRIVER_FIX_TEXT = ("35.6111", "36.7222")


class Recorder(logging.Handler):
    """Keeps every in-process log record of the module, formatted as a production log would be."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # The test's own WebSocket client traces its frames; that is not the server's log.
        if not record.name.startswith("websockets.client"):
            self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    handler = Recorder()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("ws-security"),
        ws_allowed_origins=ALLOWED_ORIGIN,
        ws_messages_per_second="20",
        ws_max_connections_per_user="5",
    ) as running:
        running.start_api("api", log_level="debug")  # the log check sees everything
        yield running


@pytest.fixture(scope="module")
async def world(app: Any, recorder: Recorder) -> AsyncIterator[World]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        built = await build_world(http, app, LAT0, LNG0)
        yield built
    await retire_region(app.state, built.region)


async def opened(base: str, path: str, world: World, principal: str, **kwargs: Any) -> Socket:
    account = world.accounts[principal]
    assert account is not None
    socket = await Socket.open(base, path, account.token, **kwargs)
    await socket.wait_for("hello")
    return socket


# --- Every message type against every role ------------------------------------------------

# What each driver message does when it names something that is not the sender's own.
DRIVER_MESSAGE_ATTACKS: dict[str, list[dict[str, Any]]] = {
    "accept": [{"type": "accept", "offer_id": "{offer_y}"}],
    "decline": [{"type": "decline", "offer_id": "{offer_y}"}],
    # Position and status carry no target: extra ids must not redirect them to another user.
    "location": [
        {
            "type": "location",
            "lat": DRIVER_FIX[0],
            "lng": DRIVER_FIX[1],
            "driver_id": "{driver_x}",
            "ride_id": "{ride_a}",
            "rider_id": "{rider_a}",
        }
    ],
    "status": [{"type": "status", "status": "offline", "driver_id": "{driver_x}"}],
}


def fill(message: dict[str, Any], world: World) -> dict[str, Any]:
    values = {
        "offer_y": world.offer_y,
        "ride_a": world.ride_a,
        "driver_x": world.id("driver_x"),
        "rider_a": world.id("rider_a"),
    }
    return {k: v.format(**values) if isinstance(v, str) else v for k, v in message.items()}


async def test_sockets_refuse_every_other_role_before_any_data(base: str, world: World) -> None:
    allowed = {
        "/v1/rider/ws": {"rider_a", "rider_b"},
        "/v1/driver/ws": {"driver_x", "driver_y", "member", "suspended"},
    }
    for path, roles in allowed.items():
        for principal, account in world.accounts.items():
            if principal in roles:
                continue
            socket = await Socket.open(base, path, account.token if account else None)
            await asyncio.wait_for(socket._reader, 5)
            assert socket.close_code == 1008 and socket.received == [], (path, principal)


def test_every_driver_message_type_has_an_attack_entry() -> None:
    assert set(DRIVER_MESSAGES) == set(DRIVER_MESSAGE_ATTACKS)


async def test_riders_can_send_no_driver_message(base: str, world: World, app: Any) -> None:
    before = await state_fingerprint(app, world.region)
    socket = await opened(base, "/v1/rider/ws", world, "rider_b")
    for kind, attacks in DRIVER_MESSAGE_ATTACKS.items():
        for attack in attacks:
            await socket.send(fill(attack, world))
            error = await socket.wait_for("error", **{"for": kind})
            assert error["error"] == "unknown_type"
    await socket.close()
    assert await state_fingerprint(app, world.region) == before


async def test_drivers_cannot_act_on_offers_rides_or_positions_of_others(
    base: str, world: World, app: Any
) -> None:
    rider_a = await opened(base, "/v1/rider/ws", world, "rider_a")
    before = await state_fingerprint(app, world.region)
    nyc = RegionKeys(app.state.settings.region)
    x_position = await app.state.redis.geopos(nyc.drivers_geo, world.id("driver_x"))
    for principal in ("driver_x", "member", "suspended"):
        socket = await opened(base, "/v1/driver/ws", world, principal)
        for kind in ("accept", "decline"):
            for attack in DRIVER_MESSAGE_ATTACKS[kind]:
                await socket.send(fill(attack, world))
                error = await socket.wait_for("error", **{"for": kind})
                assert error["error"] == "offer_not_found", (principal, error)
        await socket.close()
    assert await state_fingerprint(app, world.region) == before

    # Driver Y, online and with an offer (not a ride), tries to steer its position to rider A
    # and to pass itself off as driver X.
    driver_y = await opened(base, "/v1/driver/ws", world, "driver_y")
    for attack in DRIVER_MESSAGE_ATTACKS["location"]:
        await driver_y.send({**fill(attack, world), "id": "y-fix"})
        await driver_y.wait_for("location.ack", id="y-fix")
    assert await app.state.redis.geopos(nyc.drivers_geo, world.id("driver_x")) == x_position
    y_position = await app.state.redis.geopos(nyc.drivers_geo, world.id("driver_y"))
    assert y_position[0] is not None, "Y's own position is indexed under Y"
    for attack in DRIVER_MESSAGE_ATTACKS["status"]:
        await driver_y.send(fill(attack, world))
        await driver_y.wait_for("status", status="offline")
    async with app.state.sessionmaker() as session:
        from dispatch.accounts.models import Driver

        x = await session.get(Driver, uuid.UUID(world.id("driver_x")))
        assert x is not None and x.is_online, "Y's status message changed X"
    await driver_y.send({"type": "status", "status": "online"})
    await driver_y.wait_for("status", status="online")
    await driver_y.close()
    await asyncio.sleep(0.3)
    assert not rider_a.of_type("driver.location"), "rider A saw a position of a driver not theirs"
    await rider_a.close()


async def test_driver_position_reaches_only_the_rider_of_the_ride_and_only_during_it(
    base: str, world: World, client: httpx.AsyncClient
) -> None:
    rider_a = await opened(base, "/v1/rider/ws", world, "rider_a")
    rider_b = await opened(base, "/v1/rider/ws", world, "rider_b")
    driver_x = await opened(base, "/v1/driver/ws", world, "driver_x")
    status = await driver_x.wait_for("status")
    assert status["active_ride_id"] == world.ride_a

    await driver_x.send({"type": "location", "lat": DRIVER_FIX[0], "lng": DRIVER_FIX[1]})
    seen = await rider_a.wait_for("driver.location", ride_id=world.ride_a)
    assert (seen["lat"], seen["lng"]) == DRIVER_FIX

    headers = world.headers("driver_x")
    for action in ("arrive", "start", "complete"):
        response = await client.post(f"/v1/driver/rides/{world.ride_a}/{action}", headers=headers)
        assert response.status_code == 200, response.text
    await driver_x.wait_for("ride.completed", ride_id=world.ride_a)
    await rider_a.wait_for("ride.completed", ride_id=world.ride_a)
    positions_during_ride = len(rider_a.of_type("driver.location"))

    await driver_x.send(
        {"type": "location", "lat": DRIVER_FIX[0], "lng": DRIVER_FIX[1], "id": "after"}
    )
    await driver_x.wait_for("location.ack", id="after")
    await asyncio.sleep(0.5)
    assert len(rider_a.of_type("driver.location")) == positions_during_ride, (
        "position sent after the ride"
    )
    assert not rider_b.of_type("driver.location")

    # After the ride the driver's REST views no longer carry the rider's contact.
    ride = (await client.get(f"/v1/driver/rides/{world.ride_a}", headers=headers)).json()
    assert ride["rider"] is None
    for socket in (rider_a, rider_b, driver_x):
        await socket.close()


async def test_replayed_history_does_not_leak_past_riders_contacts(base: str, world: World) -> None:
    """A driver reconnecting with ?after=0 replays its events: past riders' phones are withheld."""
    from tests.security.world import RIDER_A_PHONE

    account = world.accounts["driver_x"]
    assert account is not None
    # Runs after the ride above has completed.
    socket = await Socket.open(base, "/v1/driver/ws", account.token, query="after=0")
    await socket.wait_for("hello")
    assigned = await socket.wait_for("ride.assigned", ride_id=world.ride_a)
    assert RIDER_A_PHONE not in str(assigned), "a finished ride's rider phone was replayed"
    await socket.close()


# --- Floods -------------------------------------------------------------------------------


async def test_message_floods_are_throttled_then_closed(base: str, world: World) -> None:
    socket = await opened(base, "/v1/driver/ws", world, "member")
    started = time.monotonic()
    with contextlib.suppress(websockets.ConnectionClosed):
        for i in range(600):
            await socket.connection.send('{"type": "teleport", "id": %d}' % i)
    await asyncio.wait_for(socket._reader, 10)
    elapsed = time.monotonic() - started
    assert socket.close_code == 1008 and socket.close_reason == "message flood"
    throttled = [m for m in socket.received if m.get("error") == "rate_limited"]
    handled = [m for m in socket.received if m.get("error") == "unknown_type"]
    assert throttled, "the flood was never throttled"
    # A bucket of two seconds' worth (40 at 20/s) plus what refilled while the flood lasted.
    assert len(handled) <= 40 + 20 * elapsed + 1, (len(handled), elapsed)


async def test_a_flood_in_one_burst_is_told_why_before_the_close(base: str, world: World) -> None:
    """All frames in one write reach the server's queue at once, so its read loop meets the
    flood limit without ever yielding to the writer: the errors must still go out first."""
    account = world.accounts["member"]
    assert account is not None
    reader, writer = await raw_websocket(base, "/v1/driver/ws", account.token)
    flood = [text_frame('{"type": "teleport", "id": %d}' % i) for i in range(600)]
    writer.write(b"".join(flood))
    texts, close_code = await asyncio.wait_for(frames_until_close(reader), 10)
    writer.close()
    assert close_code == 1008
    assert any('"rate_limited"' in text for text in texts), texts[-3:]


async def test_a_client_within_the_rate_is_never_throttled(base: str, world: World) -> None:
    socket = await opened(base, "/v1/driver/ws", world, "suspended")
    for i in range(30):
        await socket.send({"type": "teleport", "id": i})
        await asyncio.sleep(1 / 15)
    await socket.wait_for("error", error="unknown_type", id=29)
    assert not [m for m in socket.received if m.get("error") == "rate_limited"]
    assert socket.close_code is None
    await socket.close()


# --- Origin -------------------------------------------------------------------------------


async def origin_result(base: str, token: str, origin: str | None) -> tuple[int | None, list[Any]]:
    url = base.replace("http://", "ws://") + "/v1/rider/ws"
    headers = bearer(token)
    received: list[Any] = []
    async with websockets.connect(url, additional_headers=headers, origin=origin) as raw:  # type: ignore[arg-type]
        with contextlib.suppress(websockets.ConnectionClosed):
            received.append(await asyncio.wait_for(raw.recv(), 5))
            await raw.close()
        return raw.close_code, received


async def test_browser_origins_must_be_on_the_allow_list(base: str, world: World) -> None:
    account = world.accounts["rider_b"]
    assert account is not None
    for origin in (
        "https://evil.example",
        "null",
        "https://app.coop.example.evil.example",
        "http://app.coop.example",
    ):
        code, received = await origin_result(base, account.token, origin)
        assert code == 1008 and received == [], origin
    for origin in (ALLOWED_ORIGIN, None):  # the allowed web app, and native apps (no Origin)
        code, received = await origin_result(base, account.token, origin)
        assert received and '"hello"' in received[0], origin


def test_by_default_no_browser_origin_is_allowed() -> None:
    from dispatch.core.settings import Settings

    settings = Settings(ws_allowed_origins="")

    def socket(origin: str | None) -> Any:
        return SimpleNamespace(headers={"origin": origin} if origin else {})

    assert origin_allowed(socket(None), settings)
    assert not origin_allowed(socket("https://anything.example"), settings)
    assert not origin_allowed(socket("http://localhost:3000"), settings)


# --- Logs ---------------------------------------------------------------------------------


async def test_logs_carry_no_coordinates_and_no_tokens(
    base: str, world: World, stack: Stack, recorder: Recorder
) -> None:
    """Runs last: every flow above (offers, rides, positions) has logged what it will log."""
    account = world.accounts["driver_y"]
    assert account is not None
    # A token in the query string (for clients that cannot set headers) must not reach a log line.
    socket = await Socket.open(base, "/v1/driver/ws", None, query=f"token={account.token}")
    await socket.wait_for("hello")
    await socket.send({"type": "location", "lat": DRIVER_FIX[0], "lng": DRIVER_FIX[1], "id": "q"})
    await socket.wait_for("location.ack", id="q")
    await socket.close()
    await asyncio.sleep(0.3)

    process_logs = "\n".join(p.log.read_text(errors="replace") for p in stack.processes)
    in_process = "\n".join(recorder.lines)
    assert "WebSocket" in process_logs or "GET /readyz" in process_logs, "the API logged nothing"
    secrets = [a.token for a in world.accounts.values() if a is not None]
    for name, text in (("api process", process_logs), ("in-process", in_process)):
        for needle in (*PICKUP, *DROPOFF, *DRIVER_FIX_TEXT):
            assert needle not in text, f"{name} log carries coordinate {needle}"
        for token in secrets:
            assert token not in text and token[-20:] not in text, f"{name} log carries a token"


async def test_driver_positions_are_not_stored_in_postgresql(world: World, app: Any) -> None:
    """Positions live in Redis's GEO index (latest only, pruned after silence), never in rows."""
    from sqlalchemy import text

    from dispatch.core.database import transaction

    async with transaction(app.state) as session:
        tables = (
            await session.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ).scalars()
        holding = []
        for table in tables:
            for needle in DRIVER_FIX_TEXT:
                found = await session.execute(
                    text(f"SELECT count(*) FROM {table} t WHERE t::text LIKE :needle"),
                    {"needle": f"%{needle}%"},
                )
                if found.scalar_one():
                    holding.append(f"{table} holds {needle}")
    assert not holding, holding
