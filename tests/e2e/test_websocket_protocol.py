"""The WebSocket contract against a real server process: auth, limits, bad input, resume."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import websockets

from loadtests.frames import upgrade_request
from tests.e2e.harness import (
    TIMES_SQUARE,
    WALL_STREET,
    Socket,
    Stack,
    auth,
    forged,
    frames_until_close,
    raw_websocket,
    register,
    running_stack,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("ws"), ws_heartbeat_s="1", ws_max_connections_per_user="2"
    ) as running:
        running.start_api("api")
        yield running


async def closed_with(
    base: str, path: str, token: str | None
) -> tuple[int | None, str | None, list[Any]]:
    socket = await Socket.open(base, path, token)
    await asyncio.wait_for(socket._reader, 5)
    return socket.close_code, socket.close_reason, socket.received


async def test_bad_tokens_close_1008_before_any_data(base: str) -> None:
    rider = register(base, "rider", "Ws Rider")
    none_alg = jwt.encode({"sub": rider["id"], "role": "rider"}, key=None, algorithm="none")
    cases = [
        None,
        "garbage",
        none_alg,
        forged({"sub": rider["id"], "role": "rider", "exp": int(time.time()) - 5}),
        forged({"sub": rider["id"], "role": "rider", "aud": "someone-else"}),
        forged(
            {"sub": rider["id"], "role": "rider"}, secret="another-secret-of-at-least-32-bytes!"
        ),
        rider["token"][:-3] + "abc",
    ]
    for token in cases:
        code, reason, received = await closed_with(base, "/v1/rider/ws", token)
        assert code == 1008, token
        assert reason and "token" in reason
        assert received == []
    code, reason, received = await closed_with(base, "/v1/driver/ws", rider["token"])
    assert code == 1008 and received == [] and reason == "this socket is for drivers"


async def test_token_in_query_parameter_works(base: str) -> None:
    rider = register(base, "rider", "Query Rider")
    socket = await Socket.open(base, "/v1/rider/ws", None, query=f"token={rider['token']}")
    hello = await socket.wait_for("hello")
    assert hello["user_id"] == rider["id"] and hello["seq"] == 1
    await socket.close()


async def test_oversized_frame_closes_1009(base: str) -> None:
    driver = register(base, "driver", "Big Frame")
    socket = await Socket.open(base, "/v1/driver/ws", driver["token"])
    await socket.wait_for("hello")
    await socket.send({"type": "location", "lat": 40.7, "lng": -73.9, "padding": "x" * 10_000})
    await asyncio.wait_for(socket._reader, 5)
    assert socket.close_code == 1009


async def test_malformed_messages_get_errors_and_the_socket_survives(base: str) -> None:
    driver = register(base, "driver", "Sloppy Client")
    socket = await Socket.open(base, "/v1/driver/ws", driver["token"])
    await socket.wait_for("hello")
    await socket.connection.send("{not json")
    assert (await socket.wait_for("error", error="bad_message"))["detail"] == "not valid JSON"
    await socket.connection.send("[" * 2000 + "]" * 2000)  # deeper than either parser recurses
    await asyncio.sleep(0.3)
    assert len([m for m in socket.of_type("error") if m["error"] == "bad_message"]) == 2
    await socket.connection.send("[1, 2]")
    await socket.send({"type": "teleport"})
    await socket.wait_for("error", error="unknown_type")
    await socket.send({"type": "location", "lat": 40.7, "lng": -73.9})
    await socket.wait_for("error", error="offline")
    await socket.send({"type": "status", "status": "online"})
    await socket.wait_for("status", status="online")
    await socket.connection.send('{"type": "location", "lat": NaN, "lng": -73.9}')
    await socket.send({"type": "location", "lat": 95, "lng": -73.9})
    await socket.send({"type": "location", "lat": "40.7", "lng": -73.9})
    await asyncio.sleep(0.3)
    assert len([m for m in socket.of_type("error") if m["error"] == "bad_coordinates"]) == 3
    await socket.send({"type": "accept", "offer_id": "nope"})
    await socket.wait_for("error", error="bad_message", **{"for": "accept"})
    await socket.send({"type": "accept", "offer_id": str(uuid.uuid4())})
    await socket.wait_for("error", error="offer_not_found")
    await socket.send({"type": "location", "lat": 40.7, "lng": -73.9, "id": "ok"})
    await socket.wait_for("location.ack", id="ok")
    await socket.send({"type": "status", "status": "offline"})
    await socket.wait_for("status", status="offline")
    assert socket.close_code is None
    await socket.close()


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


async def test_deeply_nested_fields_get_bad_message_and_the_socket_survives(base: str) -> None:
    """Nesting within the parsers' limits once reached the handlers (and the writer, which died
    on the echo): no error frame, and the socket closed 4408 a minute later."""
    driver = register(base, "driver", "Nested Driver")
    rider = register(base, "rider", "Nested Rider")
    driver_socket = await Socket.open(base, "/v1/driver/ws", driver["token"])
    await driver_socket.wait_for("hello")
    await driver_socket.send({"type": "status", "status": "online"})
    await driver_socket.wait_for("status", status="online")
    rider_socket = await Socket.open(base, "/v1/rider/ws", rider["token"])
    await rider_socket.wait_for("hello")
    frames = {
        driver_socket: [
            '{"type": "location", "lat": 40.7, "lng": -73.9, "id": %s}' % nested(1000),
            '{"type": "accept", "offer_id": %s}' % nested(1000),
            '{"type": "decline", "offer_id": {"a": %s}}' % nested(500),
            '{"type": "status", "status": %s}' % nested(100),
        ],
        rider_socket: ['{"type": "pong", "id": %s}' % nested(1000)],
    }
    for socket, texts in frames.items():
        for text in texts:
            await socket.connection.send(text)
            error = await socket.wait_for("error", error="bad_message")
            assert "nested" in error["detail"], error
    await driver_socket.send({"type": "location", "lat": 40.7, "lng": -73.9, "id": "after"})
    await driver_socket.wait_for("location.ack", id="after")
    await rider_socket.send({"type": "teleport"})
    await rider_socket.wait_for("error", error="unknown_type")
    for socket in (driver_socket, rider_socket):
        assert socket.close_code is None
        await socket.close()


async def refused_upgrade(base: str, path: str, *headers: str) -> tuple[bytes, bytes]:
    """Send an upgrade by hand; the server's whole answer and what it sends after it (b"" once
    it closed the connection). The timeouts are generous: before the fix no answer ever came."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(upgrade_request(f"{host}:{port}", path, headers=headers))
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        rest = await asyncio.wait_for(reader.read(), 20)  # the body, then EOF
        return head, rest
    finally:
        writer.close()


async def test_an_oversized_upgrade_is_answered_and_closed(base: str) -> None:
    """Upgrades websockets refuses before they are a request (its 8 KiB line limit) got no
    answer, and the connection was held until the client gave up (uvicorn checked only for
    frame errors, so the refusal stayed in the protocol's buffer)."""
    head, rest = await refused_upgrade(base, "/v1/driver/ws?token=" + "a" * 9000)
    assert head.startswith(b"HTTP/1.1 414 "), head
    assert b"expected no more than 8192 bytes" in rest, rest
    head, _ = await refused_upgrade(base, "/v1/rider/ws", "X-Padding: " + "b" * 9000)
    assert head.startswith(b"HTTP/1.1 431 "), head
    many_headers = [f"X-H{i}: {i}" for i in range(200)]
    head, _ = await refused_upgrade(base, "/v1/rider/ws", *many_headers)
    assert head.startswith(b"HTTP/1.1 431 "), head
    # The server is unharmed: a normal upgrade still works.
    rider = register(base, "rider", "After Long Line")
    socket = await Socket.open(base, "/v1/rider/ws", rider["token"])
    await socket.wait_for("hello")
    await socket.close()


async def test_a_new_socket_past_the_cap_replaces_the_oldest(base: str) -> None:
    rider = register(base, "rider", "Many Tabs")
    first = await Socket.open(base, "/v1/rider/ws", rider["token"])
    await first.wait_for("hello")
    second = await Socket.open(base, "/v1/rider/ws", rider["token"])
    await second.wait_for("hello")
    third = await Socket.open(base, "/v1/rider/ws", rider["token"])
    await third.wait_for("hello")
    await asyncio.wait_for(first._reader, 5)
    assert first.close_code == 4409 and first.close_reason and "replaced" in first.close_reason
    for socket in (second, third):
        await socket.send({"type": "nonsense"})
        await socket.wait_for("error", error="unknown_type")
        assert socket.close_code is None
        await socket.close()


async def test_a_dead_socket_is_replaced_without_waiting_for_its_heartbeat(base: str) -> None:
    """A phone that lost its network never answers the close: its socket still goes."""
    driver = register(base, "driver", "Tunnel Driver")
    # The cap here is 2 per user; these two never read or answer again.
    dead = [await raw_websocket(base, "/v1/driver/ws", driver["token"]) for _ in range(2)]
    fresh = await Socket.open(base, "/v1/driver/ws", driver["token"])
    await fresh.wait_for("hello")
    await fresh.send({"type": "status", "status": "online"})
    await fresh.wait_for("status", status="online")
    oldest = dead[0]
    _, close_code = await asyncio.wait_for(frames_until_close(oldest[0]), 5)
    assert close_code == 4409
    # The server gives up on the close reply and drops the connection (uvicorn waits 10 s).
    assert await asyncio.wait_for(oldest[0].read(), 15) == b""
    assert fresh.close_code is None
    await fresh.close()
    for _, writer in dead:
        writer.close()


async def test_silent_clients_are_dropped_after_missed_heartbeats(base: str) -> None:
    rider = register(base, "rider", "Silent")
    url = base.replace("http://", "ws://") + "/v1/rider/ws"
    async with websockets.connect(url, additional_headers=auth(rider)) as raw:
        started = time.monotonic()

        async def read_until_closed() -> None:
            while True:
                await asyncio.wait_for(raw.recv(), 10)

        with pytest.raises(websockets.ConnectionClosed):
            await read_until_closed()
        assert raw.close_code == 4408
        assert time.monotonic() - started < 8


async def test_reconnecting_rider_resumes_from_last_event(base: str) -> None:
    rider = register(base, "rider", "Flaky Network")
    socket = await Socket.open(base, "/v1/rider/ws", rider["token"])
    await socket.wait_for("hello")
    quote = httpx.post(
        f"{base}/v1/rider/quotes",
        json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
        headers=auth(rider),
    )
    ride = httpx.post(
        f"{base}/v1/rider/rides", json={"quote_id": quote.json()["id"]}, headers=auth(rider)
    ).json()
    searching = await socket.wait_for("ride.searching", ride_id=ride["id"])
    await socket.close()

    cancelled = httpx.post(f"{base}/v1/rider/rides/{ride['id']}/cancel", headers=auth(rider))
    assert cancelled.status_code == 200

    resumed = await Socket.open(
        base, "/v1/rider/ws", rider["token"], query=f"after={searching['event_id']}"
    )
    missed = await resumed.wait_for("ride.cancelled", ride_id=ride["id"])
    assert missed["event_id"] > searching["event_id"]
    assert not resumed.of_type("ride.searching")
    assert [m["seq"] for m in resumed.received] == list(range(1, len(resumed.received) + 1))
    await resumed.close()
