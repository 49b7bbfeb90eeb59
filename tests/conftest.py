"""Real PostgreSQL+PostGIS and Redis: a fresh test database, migrated once per run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

SERVER_URL = os.environ.get(
    "COOP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/coop_dispatch"
)
REDIS_BASE = os.environ.get("COOP_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
# Several people may run suites at once on one server: each can pick its own database and Redis db.
TEST_DB = os.environ.get("COOP_TEST_DB", "coop_dispatch_test")
TEST_DATABASE_URL = SERVER_URL.rsplit("/", 1)[0] + "/" + TEST_DB
TEST_REDIS_URL = REDIS_BASE + "/" + os.environ.get("COOP_TEST_REDIS_DB", "1")
TEST_JWT_SECRET = "test-only-secret-that-is-long-enough-0123456789"
TEST_METRICS_TOKEN = "test-only-metrics-token-0123456789"


# Every process the tests start (and get_settings() here) sees the test database and fast timings.
os.environ.update(
    {
        "COOP_DATABASE_URL": TEST_DATABASE_URL,
        "COOP_REDIS_URL": TEST_REDIS_URL,
        "COOP_BATCH_INTERVAL_S": "0.3",
        "COOP_OFFER_TTL_S": "4",
        "COOP_REQUEST_TIMEOUT_S": "30",
        "COOP_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        "COOP_LOGIN_ACCOUNT_ATTEMPTS_PER_MINUTE": "1000",
        "COOP_REGISTER_PER_ADDRESS_PER_HOUR": "1000000",
        "COOP_REGISTER_PER_EMAIL_PER_HOUR": "1000",
        "COOP_QUOTES_PER_ADDRESS_PER_MINUTE": "1000000",
        "COOP_QUOTES_PER_RIDER_PER_MINUTE": "1000",
        "COOP_JWT_SECRET": TEST_JWT_SECRET,
        # Tests add regions while processes run: a position outside the known areas reloads them.
        "COOP_SERVICE_AREA_RELOAD_S": "0",
        "COOP_METRICS_TOKEN": TEST_METRICS_TOKEN,
    }
)

from dispatch.app import create_app  # noqa: E402
from dispatch.core.settings import Settings, get_settings  # noqa: E402
from dispatch.simulation.datasets import DATA_DIR  # noqa: E402

PASSWORD = "correct-horse-battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


METRICS_HEADERS = bearer(TEST_METRICS_TOKEN)
# Fixtures shared beyond one folder: a region of the test's own, the URL of a module's stack.
pytest_plugins = ["tests.fixtures.regions", "tests.e2e.harness"]


async def _recreate_database() -> None:
    admin = await asyncpg.connect(SERVER_URL.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEST_DB}")
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def settings() -> Settings:
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session", autouse=True)
async def database(settings: Settings) -> None:
    await _recreate_database()
    from dispatch.migrate import upgrade

    await asyncio.to_thread(upgrade)
    from dispatch.entrypoints import seed_demo_coop

    await seed_demo_coop(settings)
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    await client.flushdb()
    await client.aclose()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings, with_api=True, with_dispatcher=False)
    lifespan = application.router.lifespan_context(application)
    await lifespan.__aenter__()
    yield application
    # After the fault tests (killed connections, restarted servers) closing the app's clients has
    # hung for minutes; the run is over by then, so give up waiting rather than hang `make test`.
    try:
        await asyncio.wait_for(lifespan.__aexit__(None, None, None), 20)
    except TimeoutError:
        print("\nwarning: the shared test app did not shut down within 20 s")


@contextlib.asynccontextmanager
async def app_client(custom: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app of its own (engine, pool, Redis client), created with `custom`."""
    application = create_app(custom, with_api=True, with_dispatcher=False)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


class Account:
    def __init__(self, user_id: str, email: str, token: str, role: str) -> None:
        self.id = user_id
        self.email = email
        self.token = token
        self.role = role

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


async def make_account(http: httpx.AsyncClient, role: str, **extra: Any) -> Account:
    email = f"{role}-{uuid.uuid4().hex[:12]}@test.coop"
    body: dict[str, Any] = {
        "email": email,
        "password": PASSWORD,
        "name": f"Test {role}",
        "role": role,
    }
    if role == "driver":
        body["vehicle"] = {"make": "Toyota", "model": "Prius", "color": "green", "plate": "TEST123"}
    body.update(extra)
    response = await http.post("/v1/auth/register", json=body)
    assert response.status_code == 202, response.text
    token = await http.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]
    me = await http.get("/v1/auth/me", headers=bearer(access))
    return Account(me.json()["id"], email, access, role)


async def make_operator(http: httpx.AsyncClient, app: Any) -> Account:
    """An operator (made as `coop-dispatch operator create` makes one), logged in over `http`."""
    from dispatch.accounts.service import create_operator
    from dispatch.core.database import transaction

    email = f"operator-{uuid.uuid4().hex[:12]}@test.coop"
    async with transaction(app.state) as session:
        user = await create_operator(session, email, PASSWORD, "Test operator")
        user_id = str(user.id)
    token = await http.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return Account(user_id, email, token.json()["access_token"], "operator")


@pytest.fixture
async def rider(client: httpx.AsyncClient) -> Account:
    return await make_account(client, "rider")


@pytest.fixture
async def driver(client: httpx.AsyncClient) -> Account:
    return await make_account(client, "driver")


@pytest.fixture
def data_dir() -> Path:
    assert DATA_DIR.is_dir(), f"the shared NYC data is expected at {DATA_DIR}"
    return DATA_DIR
