"""A socket is only as good as its token: checked against the account at connect, closed 4401
when the token expires, extended by a `refresh` message. Real `api` process, short tokens."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import TEST_DATABASE_URL
from tests.e2e.harness import Socket, Stack, forged, register, running_stack
from tests.reliability.proxy import FaultProxy

pytestmark = pytest.mark.e2e

TOKEN_TTL_S = 5  # what the server issues here; long enough to register and connect when loaded


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("ws-tokens"), access_token_ttl_s=str(TOKEN_TTL_S)
    ) as running:
        running.start_api("api")
        yield running


async def delete_account(user_id: str) -> None:
    connection = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        await connection.execute("DELETE FROM user_account WHERE id = $1", uuid.UUID(user_id))
    finally:
        await connection.close()


async def closed_before_any_data(base: str, path: str, token: str) -> tuple[int | None, str]:
    socket = await Socket.open(base, path, token)
    await asyncio.wait_for(socket._reader, 10)
    assert socket.received == [], socket.received
    return socket.close_code, socket.close_reason or ""


async def test_tokens_of_deleted_or_changed_accounts_get_no_socket(base: str) -> None:
    rider = register(base, "rider", "Gone Rider")
    await delete_account(rider["id"])
    ghost = forged({"sub": str(uuid.uuid4()), "role": "driver"})
    driver = register(base, "driver", "Role Edit")
    # Well signed, but the account is a driver's: a token whose role no longer matches.
    as_rider = forged({"sub": driver["id"], "role": "rider"})
    for path, token in (
        ("/v1/rider/ws", rider["token"]),
        ("/v1/driver/ws", ghost),
        ("/v1/rider/ws", as_rider),
    ):
        code, reason = await closed_before_any_data(base, path, token)
        assert code == 1008 and "no longer exists" in reason, (path, code, reason)


async def test_a_socket_closes_4401_when_its_token_expires(base: str) -> None:
    driver = register(base, "driver", "Expiring")
    socket = await Socket.open(base, "/v1/driver/ws", driver["token"])
    hello = await socket.wait_for("hello")
    expires_at = datetime.fromisoformat(hello["expires_at"])
    assert 0 < expires_at.timestamp() - time.time() <= TOKEN_TTL_S
    await socket.send({"type": "status", "status": "online"})
    await socket.wait_for("status", status="online")
    await asyncio.wait_for(socket._reader, TOKEN_TTL_S + 15)
    assert socket.close_code == 4401, socket.close_code
    assert socket.close_reason and "expired" in socket.close_reason
    assert time.time() >= expires_at.timestamp()


async def test_refresh_extends_the_socket_only_with_the_same_accounts_token(base: str) -> None:
    rider = register(base, "rider", "Refreshing")
    other = register(base, "rider", "Someone Else")
    socket = await Socket.open(base, "/v1/rider/ws", rider["token"])
    first_expiry = datetime.fromisoformat((await socket.wait_for("hello"))["expires_at"])

    refused = {
        "garbage": "not-a-token",
        "other user": other["token"],
        "other role": forged({"sub": rider["id"], "role": "driver"}),
        "expired": forged({"sub": rider["id"], "role": "rider", "exp": int(time.time()) - 5}),
    }
    for case, token in refused.items():
        await socket.send({"type": "refresh", "token": token, "id": case})
        error = await socket.wait_for("error", id=case)
        assert error["error"] == "invalid_token" and error["for"] == "refresh", (case, error)
        assert token not in str(error)
    await socket.send({"type": "refresh", "id": "no token"})
    await socket.wait_for("error", error="invalid_token", id="no token")

    fresh = forged({"sub": rider["id"], "role": "rider", "exp": int(time.time()) + 3600})
    await socket.send({"type": "refresh", "token": fresh, "id": "ok"})
    refreshed = await socket.wait_for("refreshed", id="ok")
    assert datetime.fromisoformat(refreshed["expires_at"]).timestamp() > time.time() + 3000

    # Past the first token's expiry the socket still works.
    await asyncio.sleep(max(0.0, first_expiry.timestamp() - time.time()) + 1.5)
    await socket.send({"type": "teleport"})
    await socket.wait_for("error", error="unknown_type")
    assert socket.close_code is None

    # An account deleted under an open socket: its next refresh closes it.
    await delete_account(rider["id"])
    await socket.send({"type": "refresh", "token": fresh})
    await asyncio.wait_for(socket._reader, 10)
    assert socket.close_code == 4401
    assert socket.close_reason and "no longer exists" in socket.close_reason


async def test_refused_refreshes_leave_the_first_deadline(base: str) -> None:
    rider = register(base, "rider", "Refused Refresh")
    other = register(base, "rider", "Other Refresh")
    socket = await Socket.open(base, "/v1/rider/ws", rider["token"])
    await socket.wait_for("hello")
    await socket.send({"type": "refresh", "token": other["token"]})
    await socket.wait_for("error", error="invalid_token")
    await asyncio.wait_for(socket._reader, TOKEN_TTL_S + 15)
    assert socket.close_code == 4401


async def test_an_account_that_cannot_be_checked_closes_1013(tmp_path: Path) -> None:
    """PostgreSQL unreachable at connect: "try again later", not a socket for an unchecked token
    (nor a 1008 that tells the app its token is bad)."""
    target = urlsplit(TEST_DATABASE_URL)
    assert target.hostname and target.port
    # The proxy runs on a loop of its own: the harness waits for the API synchronously.
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    proxy = FaultProxy(target.hostname, target.port)
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
    url = TEST_DATABASE_URL.replace(f":{target.port}/", f":{proxy.port}/")
    ghost = forged({"sub": str(uuid.uuid4()), "role": "rider"})
    try:
        with running_stack(tmp_path, database_url=url, database_connect_timeout_s="2") as stack:
            api = stack.start_api("api")
            assert api.url is not None
            loop.call_soon_threadsafe(proxy.reset)
            code, reason = await closed_before_any_data(api.url, "/v1/rider/ws", ghost)
            assert code == 1013 and "reconnect" in reason, (code, reason)
            loop.call_soon_threadsafe(proxy.heal)
            code, reason = await closed_before_any_data(api.url, "/v1/rider/ws", ghost)
            assert code == 1008 and "no longer exists" in reason, (code, reason)
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
