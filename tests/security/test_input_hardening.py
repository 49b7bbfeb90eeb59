"""Text PostgreSQL cannot store (NUL) is refused with a 422, never a 500 (found by schemathesis)."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import PASSWORD, Account


async def test_nul_characters_are_refused_everywhere(
    client: httpx.AsyncClient, rider: Account
) -> None:
    email = f"nul-{uuid.uuid4().hex[:8]}@test.coop"
    body = {"email": email, "password": PASSWORD, "name": "Nul\u0000Name", "role": "rider"}
    response = await client.post("/v1/auth/register", json=body)
    assert response.status_code == 422 and response.json()["error"] == "validation_error"
    raw = b'{"email": "%s", "password": "%s", "name": "a\\u0000b", "role": "rider"}' % (
        email.encode(),
        PASSWORD.encode(),
    )
    response = await client.post(
        "/v1/auth/register", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    response = await client.post(
        "/v1/auth/token", data={"username": "a\u0000b@x.org", "password": "x"}
    )
    assert response.status_code == 422
    response = await client.get(
        "/v1/rider/rides", params={"before": "2026\u0000"}, headers=rider.headers
    )
    assert response.status_code == 422
    # Nothing was stored, and ordinary text (even a literal percent sign) still goes through.
    body["name"] = "100%00 fine"
    assert (await client.post("/v1/auth/register", json=body)).status_code == 202
