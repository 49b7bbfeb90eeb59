"""Rider and driver REST routes on the real app, real PostGIS and Redis: the contract and bad input."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from dispatch.accounts import service as accounts_service
from dispatch.core import clock, security
from dispatch.core.settings import Settings
from tests.conftest import Account, app_client, bearer, make_account

PICKUP = {"lat": 40.7580, "lng": -73.9855}
DROPOFF = {"lat": 40.7061, "lng": -74.0087}


async def quote(client: httpx.AsyncClient, account: Account, **overrides: Any) -> httpx.Response:
    body = {"pickup": PICKUP, "dropoff": DROPOFF} | overrides
    return await client.post("/v1/rider/quotes", json=body, headers=account.headers)


async def test_quote_has_the_published_fields(client: httpx.AsyncClient, rider: Account) -> None:
    response = await quote(client, rider)
    assert response.status_code == 201
    body = response.json()
    assert body["total_cents"] == body["driver_cents"] + body["coop_cents"]
    assert sum(body["breakdown"].values()) == body["total_cents"]
    assert body["policy_version"] >= 1 and body["currency"] == "USD"
    assert body["distance_m"] > 5000 and body["duration_s"] > 0
    assert body["expires_at"] > body["created_at"]


@pytest.mark.parametrize(
    "pickup",
    [
        {"lat": 91, "lng": -73.98},
        {"lat": 40.7, "lng": -181},
        {"lat": "40.7", "lng": -73.98},
        {"lat": None, "lng": -73.98},
        {"lat": True, "lng": -73.98},
        {"lat": 40.7},
        {"lat": 40.7, "lng": -73.98, "extra": 1},
    ],
)
async def test_bad_coordinates_are_422(
    client: httpx.AsyncClient, rider: Account, pickup: dict[str, Any]
) -> None:
    response = await quote(client, rider, pickup=pickup)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_nan_and_infinity_are_422(client: httpx.AsyncClient, rider: Account) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        raw = (
            '{"pickup": {"lat": %s, "lng": -73.98}, "dropoff": {"lat": 40.7, "lng": -74.0}}'
            % literal
        )
        response = await client.post(
            "/v1/rider/quotes",
            content=raw,
            headers=rider.headers | {"content-type": "application/json"},
        )
        assert response.status_code == 422, literal


async def test_outside_service_area_is_422(client: httpx.AsyncClient, rider: Account) -> None:
    response = await quote(client, rider, pickup={"lat": 48.8566, "lng": 2.3522})
    assert response.status_code == 422
    assert response.json()["error"] == "outside_service_area"


async def test_routes_need_the_right_role(
    client: httpx.AsyncClient, rider: Account, driver: Account
) -> None:
    assert (
        await client.post("/v1/rider/quotes", json={"pickup": PICKUP, "dropoff": DROPOFF})
    ).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await client.get("/v1/rider/rides", headers=bad)).status_code == 401
    assert (await quote(client, driver)).status_code == 403
    assert (await client.get("/v1/driver/earnings", headers=rider.headers)).status_code == 403


async def test_request_ride_and_idempotency(client: httpx.AsyncClient, rider: Account) -> None:
    quote_id = (await quote(client, rider)).json()["id"]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await client.post(
        "/v1/rider/rides", json={"quote_id": quote_id}, headers=rider.headers | key
    )
    again = await client.post(
        "/v1/rider/rides", json={"quote_id": quote_id}, headers=rider.headers | key
    )
    assert first.status_code == 201 and again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["status"] == "requested"

    other_quote = (await quote(client, rider)).json()["id"]
    reused = await client.post(
        "/v1/rider/rides", json={"quote_id": other_quote}, headers=rider.headers | key
    )
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"

    second_open = await client.post(
        "/v1/rider/rides", json={"quote_id": other_quote}, headers=rider.headers
    )
    assert second_open.status_code == 409

    cancel = await client.post(
        f"/v1/rider/rides/{first.json()['id']}/cancel", headers=rider.headers
    )
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    reuse_quote = await client.post(
        "/v1/rider/rides", json={"quote_id": quote_id}, headers=rider.headers
    )
    assert reuse_quote.status_code == 409

    history = await client.get("/v1/rider/rides", headers=rider.headers)
    assert [r["id"] for r in history.json()] == [first.json()["id"]]


async def test_unknown_and_foreign_ids_are_404(client: httpx.AsyncClient, rider: Account) -> None:
    intruder = await make_account(client, "rider")
    quote_id = (await quote(client, rider)).json()["id"]
    stolen = await client.post(
        "/v1/rider/rides", json={"quote_id": quote_id}, headers=intruder.headers
    )
    assert stolen.status_code == 404
    unknown = await client.post(
        "/v1/rider/rides", json={"quote_id": str(uuid.uuid4())}, headers=rider.headers
    )
    assert unknown.status_code == 404
    ride = (
        await client.post("/v1/rider/rides", json={"quote_id": quote_id}, headers=rider.headers)
    ).json()
    assert (
        await client.get(f"/v1/rider/rides/{ride['id']}", headers=intruder.headers)
    ).status_code == 404
    cancel = await client.post(f"/v1/rider/rides/{ride['id']}/cancel", headers=intruder.headers)
    assert cancel.status_code == 404
    mine = await client.get(f"/v1/rider/rides/{ride['id']}", headers=rider.headers)
    assert mine.json()["status"] == "requested"
    assert (
        await client.get("/v1/rider/rides/not-a-uuid", headers=rider.headers)
    ).status_code == 422
    await client.post(f"/v1/rider/rides/{ride['id']}/cancel", headers=rider.headers)


async def test_expired_quote_is_410(client: httpx.AsyncClient, rider: Account) -> None:
    quote_id = (await quote(client, rider)).json()["id"]
    clock.advance(timedelta(minutes=10))
    try:
        response = await client.post(
            "/v1/rider/rides", json={"quote_id": quote_id}, headers=rider.headers
        )
    finally:
        clock.reset()
    assert response.status_code == 410
    assert response.json()["error"] == "quote_expired"


async def test_driver_actions_on_unknown_things(client: httpx.AsyncClient, driver: Account) -> None:
    unknown = uuid.uuid4()
    assert (
        await client.post(f"/v1/driver/offers/{unknown}/accept", headers=driver.headers)
    ).status_code == 404
    assert (
        await client.post(f"/v1/driver/offers/{unknown}/decline", headers=driver.headers)
    ).status_code == 404
    for action in ("arrive", "start", "complete"):
        response = await client.post(f"/v1/driver/rides/{unknown}/{action}", headers=driver.headers)
        assert response.status_code == 404
    cancel = await client.post(
        f"/v1/driver/rides/{unknown}/cancel", json={"reason": "x"}, headers=driver.headers
    )
    assert cancel.status_code == 404
    assert (
        await client.post(f"/v1/driver/rides/{unknown}/cancel", json={}, headers=driver.headers)
    ).status_code == 422
    earnings = await client.get("/v1/driver/earnings", headers=driver.headers)
    assert earnings.json()["rides"] == [] and earnings.json()["total_net_cents"] == 0
    assert (await client.get("/v1/driver/offers/current", headers=driver.headers)).json() is None


async def test_register_and_login_rules(client: httpx.AsyncClient) -> None:
    email = f"dup-{uuid.uuid4().hex[:8]}@test.coop"
    body = {"email": email, "password": "long-enough-pw", "name": "Dup", "role": "rider"}
    created = await client.post("/v1/auth/register", json=body)
    assert created.status_code == 202
    # The same email again (in another case, with another password) answers the same and
    # changes nothing: the first password still logs in, the second does not.
    again = await client.post(
        "/v1/auth/register", json=body | {"email": email.upper(), "password": "another-pw-123"}
    )
    assert again.status_code == 202 and again.content == created.content
    assert (
        await client.post("/v1/auth/token", data={"username": email, "password": "another-pw-123"})
    ).status_code == 401
    assert (
        await client.post(
            "/v1/auth/register", json=body | {"role": "operator", "email": "o" + email}
        )
    ).status_code == 422
    assert (
        await client.post(
            "/v1/auth/register", json=body | {"password": "short", "email": "s" + email}
        )
    ).status_code == 422
    wrong = await client.post("/v1/auth/token", data={"username": email, "password": "nope-nope"})
    assert wrong.status_code == 401
    token = await client.post(
        "/v1/auth/token", data={"username": email, "password": "long-enough-pw"}
    )
    assert token.status_code == 200 and token.json()["token_type"] == "bearer"
    me = await client.get("/v1/auth/me", headers=bearer(token.json()["access_token"]))
    assert me.json()["email"] == email and "password" not in str(me.json())


async def test_a_taken_email_costs_what_a_new_one_costs(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18.6: a taken email was answered without hashing the password or writing, so it
    answered in a fifth of the time. Now both paths hash once and send the same statements."""
    hashed: list[str] = []
    statements: list[str] = []

    def counting_hash(password: str) -> str:
        hashed.append(password)
        return security.hash_password(password)

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()[:3]))

    def committed(conn: Any) -> None:
        statements.append("COMMIT")

    monkeypatch.setattr(accounts_service, "hash_password", counting_hash)
    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    event.listen(engine, "commit", committed)
    taken = {
        "email": f"taken-{uuid.uuid4().hex[:8]}@test.coop",
        "password": "long-enough-pw",
        "name": "Taken",
        "role": "rider",
    }
    try:
        await client.post("/v1/auth/register", json=taken)
        work = {}
        for path, body in (
            ("new", taken | {"email": f"new-{uuid.uuid4().hex[:8]}@test.coop"}),
            ("taken", taken | {"password": "another-pw-123"}),
        ):
            hashed.clear()
            statements.clear()
            answer = await client.post("/v1/auth/register", json=body)
            assert answer.status_code == 202
            work[path] = (len(hashed), list(statements))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
        event.remove(engine, "commit", committed)
    assert work["new"] == work["taken"], work
    assert work["new"][0] == 1
    assert work["new"][1] == ["INSERT INTO user_account", "COMMIT"]


async def test_passwords_are_checked_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login's argon2 check (~30 ms) ran on the event loop, stalling every socket and request
    of the process for each attempt; sign-up's hash already ran in a thread."""
    email = f"loop-{uuid.uuid4().hex[:8]}@test.coop"
    body = {"email": email, "password": "long-enough-pw", "name": "Loop", "role": "rider"}
    assert (await client.post("/v1/auth/register", json=body)).status_code == 202
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def recording_verify(password_hash: str, password: str) -> bool:
        threads.append(threading.get_ident())
        return security.verify_password(password_hash, password)

    monkeypatch.setattr(accounts_service, "verify_password", recording_verify)
    for username, password in (
        (email, "long-enough-pw"),
        (email, "wrong-password"),
        ("nobody-" + email, "long-enough-pw"),
    ):
        await client.post("/v1/auth/token", data={"username": username, "password": password})
    assert len(threads) == 3 and loop_thread not in threads


async def test_empty_earnings_are_in_the_coops_currency(settings: Settings) -> None:
    """With no ride to read a currency from, the totals carry the co-op's setting (was "USD")."""
    async with app_client(settings.model_copy(update={"currency": "EUR"})) as http:
        driver = await make_account(http, "driver")
        earnings = await http.get("/v1/driver/earnings", headers=driver.headers)
    assert earnings.status_code == 200, earnings.text
    assert earnings.json()["rides"] == [] and earnings.json()["currency"] == "EUR"
