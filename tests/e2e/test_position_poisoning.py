"""One driver's bad position must cost that message alone: real API and dispatcher processes,
real WebSocket clients, the demo co-op's New York area."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import METRICS_HEADERS
from tests.e2e.harness import (
    TIMES_SQUARE,
    WALL_STREET,
    Socket,
    Stack,
    auth,
    online_socket,
    register,
    running_stack,
)

pytestmark = pytest.mark.e2e

NORTH = (40.7950, -73.9855)  # about 4 km from Times Square: beyond the first search radius
SOUTH = (40.7210, -73.9855)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("poisoning")) as running:
        running.start_api("api")
        running.start_dispatcher("dispatcher")
        yield running


async def stream(socket: Socket, start: tuple[float, float], count: int, tag: str) -> None:
    """Positions a few metres apart, as a parked or crawling car sends them."""
    for i in range(count):
        lat, lng = start[0] + i * 1e-5, start[1]
        await socket.send({"type": "location", "lat": lat, "lng": lng, "id": f"{tag}{i}"})
        await asyncio.sleep(0.1)


def refused(metrics: str) -> dict[str, float]:
    pattern = r'^coop_location_updates_refused_total\{reason="(\w+)"\} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, metrics, re.MULTILINE)}


async def test_a_latitude_past_the_index_range_stops_nobody_else(base: str) -> None:
    """The attack: a fresh driver sends lat 85.1 (the docs allowed ±90; Redis GEO refuses past
    ±85.05112878 and, before, failed every driver's grouped GEOADD with it, for good)."""
    north, south, parked, attacker = (
        register(base, "driver", name) for name in ("Nora North", "Sid South", "Pat Parked", "Eve")
    )
    victims = {
        "n": await online_socket(base, north["token"]),
        "s": await online_socket(base, south["token"]),
    }
    await victims["n"].send({"type": "location", "lat": NORTH[0], "lng": NORTH[1], "id": "n"})
    await victims["s"].send({"type": "location", "lat": SOUTH[0], "lng": SOUTH[1], "id": "s"})
    for tag, socket in victims.items():
        await socket.wait_for("location.ack", id=tag)

    evil = await online_socket(base, attacker["token"])
    await evil.send({"type": "location", "lat": 85.1, "lng": 0, "id": "poison"})
    answer = await evil.wait_for("error", id="poison")

    # A driver parked at the pickup shows up after the attack: its first position must index.
    parked_socket = await online_socket(base, parked["token"])
    victims["p"] = parked_socket
    await asyncio.gather(
        stream(victims["n"], NORTH, 10, "n"),
        stream(victims["s"], SOUTH, 10, "s"),
        stream(parked_socket, (TIMES_SQUARE["lat"], TIMES_SQUARE["lng"]), 10, "p"),
    )
    for tag, socket in victims.items():
        await socket.wait_for("location.ack", id=f"{tag}9", timeout=10)
        acks = {m["id"] for m in socket.of_type("location.ack")}
        assert {f"{tag}{i}" for i in range(10)} <= acks
        assert socket.of_type("error") == []
    # ...and the attacker's message alone was refused, with why.
    assert answer["error"] == "bad_coordinates" and answer["for"] == "location"

    rider = register(base, "rider", "Rita Rider")
    quote = httpx.post(
        f"{base}/v1/rider/quotes",
        json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
        headers=auth(rider),
    )
    assert quote.status_code == 201, quote.text
    ride = httpx.post(
        f"{base}/v1/rider/rides", json={"quote_id": quote.json()["id"]}, headers=auth(rider)
    )
    assert ride.status_code == 201, ride.text
    # Only the parked driver is within the first search radius (3 km, for 20 s).
    await parked_socket.wait_for("offer", ride_id=ride.json()["id"], timeout=10)

    # The attacker's socket still works for a good position.
    await evil.send({"type": "location", "lat": 40.75, "lng": -73.99, "id": "fine"})
    await evil.wait_for("location.ack", id="fine")
    counts = refused(httpx.get(f"{base}/metrics", headers=METRICS_HEADERS).text)
    assert counts.get("bad_coordinates", 0) >= 1
    for socket in (*victims.values(), evil):
        await socket.close()


async def test_positions_outside_the_area_or_too_fast_are_refused_and_counted(base: str) -> None:
    driver = register(base, "driver", "Tom Teleport")
    socket = await online_socket(base, driver["token"])
    before = refused(httpx.get(f"{base}/metrics", headers=METRICS_HEADERS).text)
    attempts = [
        ("philadelphia", 39.9526, -75.1652, "outside_service_area"),
        ("null-island", 0, 0, "outside_service_area"),
        ("pole", 90, 0, "bad_coordinates"),
        ("times-square", TIMES_SQUARE["lat"], TIMES_SQUARE["lng"], None),
        # 20 km north-east within a second: not a car.
        ("jump", 40.90, -73.80, "implausible_speed"),
        ("next-door", TIMES_SQUARE["lat"] + 1e-4, TIMES_SQUARE["lng"], None),
    ]
    for tag, lat, lng, error in attempts:
        await socket.send({"type": "location", "lat": lat, "lng": lng, "id": tag})
        if error is None:
            await socket.wait_for("location.ack", id=tag)
        else:
            answer = await socket.wait_for("error", id=tag)
            assert answer["error"] == error, answer
    after = refused(httpx.get(f"{base}/metrics", headers=METRICS_HEADERS).text)
    grew = {r: after[r] - before.get(r, 0) for r in after if after[r] != before.get(r, 0)}
    assert grew == {"bad_coordinates": 1, "outside_service_area": 2, "implausible_speed": 1}
    await socket.close()
