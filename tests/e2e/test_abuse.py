"""Attacks found by the black-box probe (issue 18), replayed against real server processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.e2e.harness import Stack, running_stack
from tests.e2e.test_ride_end_to_end import TIMES_SQUARE, WALL_STREET, auth, register

pytestmark = pytest.mark.e2e

SIMULTANEOUS = 8
TRIALS = 3


@pytest.fixture(scope="module")
def apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("abuse")
    with running_stack(tmp) as stack:
        yield _url(stack, "api-a"), _url(stack, "api-b")


def _url(stack: Stack, name: str) -> str:
    url = stack.start_api(name).url
    assert url is not None
    return url


async def test_simultaneous_ride_requests_open_one_ride(apis: tuple[str, str]) -> None:
    """Issue 18.2: one rider, many quotes, all requested at once over two API processes."""
    for _ in range(TRIALS):
        rider = register(apis[0], "rider", "Rushing Rider")
        quotes = [
            httpx.post(
                f"{apis[0]}/v1/rider/quotes",
                json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
                headers=auth(rider),
            ).json()["id"]
            for _ in range(SIMULTANEOUS)
        ]
        clients = [httpx.AsyncClient(base_url=base, headers=auth(rider)) for base in apis]
        try:
            # Warm the connections first, so the requests themselves leave together.
            await asyncio.gather(*(c.get("/v1/rider/rides") for c in clients))
            answers = await asyncio.gather(
                *(
                    clients[i % 2].post("/v1/rider/rides", json={"quote_id": quote_id})
                    for i, quote_id in enumerate(quotes)
                )
            )
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {201: 1, 409: SIMULTANEOUS - 1}, [a.text for a in answers]
        assert {a.json()["error"] for a in answers if a.status_code == 409} == {"ride_already_open"}
        history = httpx.get(f"{apis[1]}/v1/rider/rides", headers=auth(rider)).json()
        assert len(history) == 1


def from_address(base: str, address: str) -> httpx.AsyncClient:
    """A client whose connections leave from `address` (any of 127.0.0.0/8 reaches the server)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base, transport=transport)


@pytest.fixture(scope="module")
def strict_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API with the shipped login limits (the suite lifts them for everyone else)."""
    with running_stack(
        tmp_path_factory.mktemp("strict"),
        login_attempts_per_minute="10",
        login_account_attempts_per_minute="40",
    ) as stack:
        yield _url(stack, "api-strict")


async def test_strangers_wrong_passwords_do_not_lock_the_owner_out(strict_api: str) -> None:
    """Issue 18.7: ten wrong passwords from one address for someone else's email."""
    victim = register(strict_api, "rider", "Vera Victim")
    email = httpx.get(f"{strict_api}/v1/auth/me", headers=auth(victim)).json()["email"]

    async def login(client: httpx.AsyncClient, password: str) -> httpx.Response:
        return await client.post("/v1/auth/token", data={"username": email, "password": password})

    async with (
        from_address(strict_api, "127.0.0.2") as attacker,
        from_address(strict_api, "127.0.0.3") as owner,
    ):
        guesses = [await login(attacker, f"guess-{i}-wrong") for i in range(12)]
        assert [g.status_code for g in guesses] == [401] * 10 + [429] * 2
        refused = guesses[-1]
        assert refused.json()["error"] == "login_rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # The attacker is refused even with the right password; the owner, elsewhere, is not.
        assert (await login(attacker, PASSWORD)).status_code == 429
        assert (await login(owner, PASSWORD)).status_code == 200

        # Past the account's own ceiling (many addresses at once), everyone waits, with a reason.
        for n in range(4, 7):
            async with from_address(strict_api, f"127.0.0.{n}") as botnet:
                for i in range(10):
                    assert (await login(botnet, f"spray-{i}")).status_code == 401
        ceiling = await login(owner, PASSWORD)
        assert ceiling.status_code == 429 and "Retry-After" in ceiling.headers
