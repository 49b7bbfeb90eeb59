"""Attacks found by the black-box probe (issue 18), replayed against real server processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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
