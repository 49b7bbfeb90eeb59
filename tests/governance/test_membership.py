from __future__ import annotations

from typing import Any

import httpx
import pytest

from dispatch.core.settings import Settings
from tests.conftest import Account, app_client, make_account
from tests.governance.conftest import MakeMembers


async def test_operator_admits_suspends_and_reinstates(
    client: httpx.AsyncClient, operator: Account, driver: Account
) -> None:
    admitted = await client.post(
        "/v1/governance/members", json={"user_id": driver.id}, headers=operator.headers
    )
    assert admitted.status_code == 201, admitted.text
    assert admitted.json()["status"] == "active"
    me = await client.get("/v1/governance/members/me", headers=driver.headers)
    assert me.json()["status"] == "active"

    again = await client.post(
        "/v1/governance/members", json={"user_id": driver.id}, headers=operator.headers
    )
    assert again.status_code == 409 and again.json()["error"] == "already_member"

    base = f"/v1/governance/members/{driver.id}"
    suspended = await client.post(f"{base}/suspend", headers=operator.headers)
    assert suspended.json()["status"] == "suspended"
    twice = await client.post(f"{base}/suspend", headers=operator.headers)
    assert twice.status_code == 409
    reinstated = await client.post(f"{base}/reinstate", headers=operator.headers)
    assert reinstated.json()["status"] == "active"

    listed = await client.get("/v1/governance/members", headers=operator.headers)
    assert driver.id in {m["user_id"] for m in listed.json()}


async def test_membership_routes_refuse_bad_input(
    client: httpx.AsyncClient, operator: Account, driver: Account, rider: Account
) -> None:
    riders_try = await client.post(
        "/v1/governance/members", json={"user_id": driver.id}, headers=driver.headers
    )
    assert riders_try.status_code == 403
    not_a_driver = await client.post(
        "/v1/governance/members", json={"user_id": rider.id}, headers=operator.headers
    )
    assert not_a_driver.status_code == 404
    unknown = await client.post(
        "/v1/governance/members/00000000-0000-0000-0000-000000000000/suspend",
        headers=operator.headers,
    )
    assert unknown.status_code == 404
    malformed = await client.post(
        "/v1/governance/members", json={"user_id": "nope"}, headers=operator.headers
    )
    assert malformed.status_code == 422
    me = await client.get("/v1/governance/members/me", headers=driver.headers)
    assert me.status_code == 404


async def test_operators_cannot_self_register(client: httpx.AsyncClient) -> None:
    body = {"email": "op@x.coop", "password": "long-enough-pw", "name": "Op", "role": "operator"}
    assert (await client.post("/v1/auth/register", json=body)).status_code == 422


async def test_driving_waits_for_membership_only_when_the_bylaw_says_so(
    client: httpx.AsyncClient,
    settings: Settings,
    make_members: MakeMembers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outsider = await make_account(client, "driver")
    (member,) = await make_members(1)
    online = {"status": "online"}
    assert (
        await client.post("/v1/driver/status", json=online, headers=outsider.headers)
    ).status_code == 200

    monkeypatch.setattr(settings, "require_membership_to_drive", True)
    refused = await client.post("/v1/driver/status", json=online, headers=outsider.headers)
    assert refused.status_code == 403 and refused.json()["error"] == "not_a_member"
    allowed = await client.post("/v1/driver/status", json=online, headers=member.headers)
    assert allowed.status_code == 200
    for account in (outsider, member):
        await client.post("/v1/driver/status", json={"status": "offline"}, headers=account.headers)


async def test_the_driving_bylaw_is_read_from_the_app_s_settings(settings: Settings) -> None:
    """An app created with the bylaw on (create_app(settings)) once read the global settings."""
    strict = settings.model_copy(update={"require_membership_to_drive": True})
    assert not settings.require_membership_to_drive
    async with app_client(strict) as http:
        outsider = await make_account(http, "driver")
        refused = await http.post(
            "/v1/driver/status", json={"status": "online"}, headers=outsider.headers
        )
    assert refused.status_code == 403 and refused.json()["error"] == "not_a_member"


async def test_cli_creates_an_operator(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import uuid

    from dispatch.cli import main

    email = f"cli-op-{uuid.uuid4().hex[:8]}@test.coop"
    args = ["operator", "create", "--email", email, "--password", "operator-pass-1"]
    assert await asyncio.to_thread(main, args) == 0
    assert email in capsys.readouterr().out
    assert await asyncio.to_thread(main, args) == 2  # the email is taken (CLI errors exit 2)
