"""A whole ride across two API processes and a dispatcher, with real WebSocket clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.fares.pricing import price
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
from tests.fixtures.fares import rules_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    with running_stack(tmp_path) as running:
        yield running


async def test_ride_across_two_api_processes(stack: Stack) -> None:
    api_a = stack.start_api("api-a").url
    api_b = stack.start_api("api-b").url
    assert api_a and api_b
    stack.start_dispatcher("dispatcher")

    rider = register(api_a, "rider", "Rita Rider")
    other_rider = register(api_a, "rider", "Olga Other")
    near = register(api_b, "driver", "Nadia Near")
    far = register(api_a, "driver", "Felix Far")

    near_socket = await online_socket(api_b, near["token"], 40.7590, -73.9845)
    far_socket = await online_socket(api_a, far["token"], 40.7650, -73.9800)

    quote = httpx.post(
        f"{api_a}/v1/rider/quotes",
        json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
        headers=auth(rider),
    )
    assert quote.status_code == 201, quote.text
    quote_body = quote.json()
    rider_socket = await Socket.open(api_a, "/v1/rider/ws", rider["token"])
    await rider_socket.wait_for("hello")

    key = {"Idempotency-Key": "e2e-ride-1"}
    request = httpx.post(
        f"{api_b}/v1/rider/rides", json={"quote_id": quote_body["id"]}, headers=auth(rider) | key
    )
    assert request.status_code == 201, request.text
    ride_id = request.json()["id"]
    retry = httpx.post(
        f"{api_a}/v1/rider/rides", json={"quote_id": quote_body["id"]}, headers=auth(rider) | key
    )
    assert retry.status_code == 201 and retry.json()["id"] == ride_id

    first_offer = await near_socket.wait_for("offer", ride_id=ride_id)
    assert first_offer["driver_cents"] == quote_body["driver_cents"]
    assert first_offer["pickup"] == TIMES_SQUARE
    await near_socket.send({"type": "decline", "offer_id": first_offer["offer_id"]})
    await near_socket.wait_for("declined", offer_id=first_offer["offer_id"])

    second_offer = await far_socket.wait_for("offer", ride_id=ride_id)
    stolen = httpx.post(
        f"{api_b}/v1/driver/offers/{second_offer['offer_id']}/accept", headers=auth(near)
    )
    assert stolen.status_code == 404
    await far_socket.send({"type": "accept", "offer_id": second_offer["offer_id"]})
    accepted = await far_socket.wait_for("accepted", offer_id=second_offer["offer_id"])
    assert accepted["ride"]["status"] == "matched"

    matched = await rider_socket.wait_for("ride.matched", ride_id=ride_id)
    assert matched["driver"]["name"] == "Felix Far"
    assert matched["vehicle"]["make"] == "Toyota"
    assert matched["eta_s"] > 0

    await far_socket.send({"type": "location", "lat": 40.7646, "lng": -73.9804})
    position = await rider_socket.wait_for("driver.location", ride_id=ride_id)
    assert position["lat"] == pytest.approx(40.7646)

    for action, event in (
        ("arrive", "ride.arrived"),
        ("start", "ride.started"),
        ("complete", "ride.completed"),
    ):
        step = httpx.post(f"{api_b}/v1/driver/rides/{ride_id}/{action}", headers=auth(far))
        assert step.status_code == 200, step.text
        await rider_socket.wait_for(event, ride_id=ride_id)

    receipt = rider_socket.of_type("ride.completed")[0]["receipt"]
    policy = httpx.get(f"{api_a}/v1/governance/policy").json()
    rules = rules_of(policy)
    expected = price(rules, quote_body["distance_m"], quote_body["duration_s"])
    assert (receipt["total_cents"], receipt["driver_cents"], receipt["coop_cents"]) == (
        expected.total_cents,
        expected.driver_cents,
        expected.coop_cents,
    )
    assert receipt["policy_version"] == policy["version"]

    seqs = [m["seq"] for m in rider_socket.received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    assert (
        httpx.get(f"{api_a}/v1/rider/rides/{ride_id}", headers=auth(other_rider)).status_code == 404
    )
    assert httpx.get(f"{api_a}/v1/driver/rides/{ride_id}", headers=auth(near)).status_code == 404
    assert (
        httpx.post(f"{api_a}/v1/driver/rides/{ride_id}/complete", headers=auth(near)).status_code
        == 404
    )
    assert httpx.get(f"{api_a}/v1/rider/rides/{ride_id}", headers=auth(far)).status_code == 403

    earnings = httpx.get(f"{api_a}/v1/driver/earnings", headers=auth(far)).json()
    line = next(item for item in earnings["rides"] if item["ride_id"] == ride_id)
    assert (line["gross_cents"], line["coop_commission_cents"], line["net_cents"]) == (
        expected.total_cents,
        expected.coop_cents,
        expected.driver_cents,
    )
    final = httpx.get(f"{api_b}/v1/rider/rides/{ride_id}", headers=auth(rider)).json()
    assert (
        final["status"] == "completed" and final["receipt"]["total_cents"] == expected.total_cents
    )

    for socket in (near_socket, far_socket, rider_socket):
        await socket.close()
