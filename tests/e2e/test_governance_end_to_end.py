"""Governance through real processes: members vote a commission cut over the API, the dispatcher
process closes the vote on time and enacts it, and the next ride's receipt has the new split and
names the proposal. Then `coop-dispatch governance verify` checks the log."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.fares.pricing import price
from tests.conftest import PASSWORD, bearer
from tests.e2e.harness import (
    ROOT,
    TIMES_SQUARE,
    WALL_STREET,
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
    with running_stack(tmp_path, governance_min_voting_s="1", offer_ttl_s="30") as running:
        yield running


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatch.cli", *args],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_members_vote_a_commission_cut_that_the_next_receipt_shows(stack: Stack) -> None:
    api = stack.start_api("api").url
    assert api
    stack.start_dispatcher("dispatcher")

    email = f"operator-{uuid.uuid4().hex[:10]}@e2e.coop"
    created = cli(stack, "operator", "create", "--email", email, "--password", PASSWORD)
    assert created.returncode == 0, created.stderr
    token = httpx.post(f"{api}/v1/auth/token", data={"username": email, "password": PASSWORD})
    operator = bearer(token.json()["access_token"])

    # This vote's roll is exactly our three drivers.
    for member in httpx.get(f"{api}/v1/governance/members", headers=operator).json():
        if member["status"] == "active":
            httpx.post(f"{api}/v1/governance/members/{member['user_id']}/suspend", headers=operator)
    drivers = [register(api, "driver", name) for name in ("Gina Gov", "Hugo Gov", "Ines Gov")]
    for driver in drivers:
        admitted = httpx.post(
            f"{api}/v1/governance/members", json={"user_id": driver["id"]}, headers=operator
        )
        assert admitted.status_code == 201, admitted.text
    rider = register(api, "rider", "Vera Voter")
    sockets = [await online_socket(api, driver["token"], 40.7585, -73.9850) for driver in drivers]

    in_force = httpx.get(f"{api}/v1/governance/policy").json()
    cut = (Decimal(str(in_force["commission_rate"])) - Decimal("0.02")).max(Decimal(0))
    closes_at = datetime.now(UTC) + timedelta(seconds=3)
    drafted = httpx.post(
        f"{api}/v1/governance/proposals",
        json={
            "title": "Cut the commission",
            "rationale": "Drivers keep more of each fare.",
            "changes": {"commission_rate": str(cut)},
            "closes_at": closes_at.isoformat(),
        },
        headers=auth(drivers[0]),
    )
    assert drafted.status_code == 201, drafted.text
    pid = drafted.json()["id"]
    for driver, socket in zip(drivers, sockets, strict=True):
        await socket.wait_for("proposal.opened", proposal_id=pid)
        voted = httpx.post(
            f"{api}/v1/governance/proposals/{pid}/votes",
            json={"choice": "yes"},
            headers=auth(driver),
        )
        assert voted.status_code == 200, voted.text

    closed = await sockets[1].wait_for("proposal.closed", timeout=20, proposal_id=pid)
    assert closed["status"] == "passed" and closed["tally"] == {"yes": 3, "no": 0, "abstain": 0}
    version = closed["policy_version"]
    enacted = next(
        p for p in httpx.get(f"{api}/v1/governance/policies").json() if p["version"] == version
    )
    assert enacted["proposal_id"] == pid and Decimal(str(enacted["commission_rate"])) == cut

    quote = httpx.post(
        f"{api}/v1/rider/quotes",
        json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
        headers=auth(rider),
    ).json()
    assert quote["policy_version"] == version
    ride_id = httpx.post(
        f"{api}/v1/rider/rides", json={"quote_id": quote["id"]}, headers=auth(rider)
    ).json()["id"]

    offer, driver, socket = None, None, None
    for candidate, candidate_socket in zip(drivers, sockets, strict=True):
        try:
            offer = await candidate_socket.wait_for("offer", timeout=5, ride_id=ride_id)
        except AssertionError:
            continue
        driver, socket = candidate, candidate_socket
        break
    assert offer and driver and socket, "no driver was offered the ride"
    await socket.send({"type": "accept", "offer_id": offer["offer_id"]})
    await socket.wait_for("accepted", offer_id=offer["offer_id"])
    for action in ("arrive", "start", "complete"):
        step = httpx.post(f"{api}/v1/driver/rides/{ride_id}/{action}", headers=auth(driver))
        assert step.status_code == 200, step.text

    receipt = httpx.get(f"{api}/v1/rider/rides/{ride_id}", headers=auth(rider)).json()["receipt"]
    expected = price(rules_of(enacted), quote["distance_m"], quote["duration_s"])
    assert receipt["policy_version"] == version and receipt["proposal_id"] == pid
    assert (receipt["total_cents"], receipt["driver_cents"], receipt["coop_cents"]) == (
        expected.total_cents,
        expected.driver_cents,
        expected.coop_cents,
    )

    verified = cli(stack, "governance", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "governance log verified" in verified.stdout
    for s in sockets:
        await s.close()


async def test_a_member_reading_the_open_log_of_a_real_api_learns_no_choice(stack: Stack) -> None:
    """The attack of issue 18.3 against a real `api` process: a member who has not voted reads
    `/v1/governance/audit` while voting is open and tries every choice on every hash."""
    from tests.governance.helpers import CHOICES, guesses, hash_fields

    api = stack.start_api("api").url
    assert api
    email = f"operator-{uuid.uuid4().hex[:10]}@e2e.coop"
    assert (
        cli(stack, "operator", "create", "--email", email, "--password", PASSWORD).returncode == 0
    )
    token = httpx.post(f"{api}/v1/auth/token", data={"username": email, "password": PASSWORD})
    operator = bearer(token.json()["access_token"])
    members = [register(api, "driver", name) for name in ("Jo Gov", "Kit Gov", "Lee Gov", "Mo Gov")]
    for member in members:
        admitted = httpx.post(
            f"{api}/v1/governance/members", json={"user_id": member["id"]}, headers=operator
        )
        assert admitted.status_code == 201, admitted.text
    drafted = httpx.post(
        f"{api}/v1/governance/proposals",
        json={
            "title": "Raise the booking fee",
            "rationale": "Dispatch costs.",
            "changes": {"booking_fee_cents": 275},
            "closes_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
        headers=auth(members[0]),
    )
    assert drafted.status_code == 201, drafted.text
    pid = drafted.json()["id"]
    for member, choice in zip(members[:3], ("yes", "no", "yes"), strict=True):
        voted = httpx.post(
            f"{api}/v1/governance/proposals/{pid}/votes",
            json={"choice": choice},
            headers=auth(member),
        )
        assert voted.status_code == 200, voted.text

    log = httpx.get(f"{api}/v1/governance/audit?limit=1000", headers=auth(members[3])).json()
    ballots = [e for e in log if e["type"] == "ballot.cast" and e["proposal_id"] == pid]
    assert len(ballots) == 3 and all(e["sealed"] for e in ballots)
    for entry in ballots:
        for choice in CHOICES:
            assert not guesses(entry, choice) & hash_fields(entry), (choice, entry)
