"""Tokens are checked on every REST call; passwords are argon2id; failed logins are throttled.

The WebSocket variants of the token checks live in tests/e2e/test_websocket_protocol.py.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.low_level import Type
from sqlalchemy import text

from dispatch.core.database import transaction
from dispatch.core.settings import Settings
from tests.conftest import PASSWORD, Account, app_client, bearer, make_account

PROTECTED = "/v1/auth/me"


def forge(
    settings: Settings, claims: dict[str, Any], *, secret: str | None = None, alg: str = "HS256"
) -> str:
    now = int(time.time())
    base = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    payload = {k: v for k, v in (base | claims).items() if v is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(payload, secret or settings.jwt_secret, algorithm=alg)


def b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def bad_tokens(settings: Settings, account: Account) -> dict[str, str]:
    sub = {"sub": account.id, "role": account.role}
    header, payload, signature = account.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    escalated = b64({**claims, "role": "operator"})
    return {
        "alg_none": jwt.encode({**claims}, key=None, algorithm="none"),
        "alg_none_unsigned_header_swap": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "expired": forge(settings, {**sub, "exp": int(time.time()) - 1}),
        "not_yet_valid": forge(settings, {**sub, "nbf": int(time.time()) + 600}),
        "wrong_audience": forge(settings, {**sub, "aud": "someone-elses-app"}),
        "wrong_issuer": forge(settings, {**sub, "iss": "evil-issuer"}),
        "no_exp": forge(settings, {**sub, "exp": None}),
        "no_aud": forge(settings, {**sub, "aud": None}),
        "no_iss": forge(settings, {**sub, "iss": None}),
        "no_iat": forge(settings, {**sub, "iat": None}),
        "wrong_secret": forge(settings, sub, secret="another-secret-that-is-32-bytes-long!"),
        "other_hmac_alg": forge(settings, sub, alg="HS512"),
        "tampered_signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "tampered_payload_role": f"{header}.{escalated}.{signature}",
        "not_a_uuid_subject": forge(settings, {"sub": "admin", "role": account.role}),
        "garbage": "not-a-jwt",
        "empty_parts": "..",
    }


async def test_bad_tokens_are_refused_with_401(
    client: httpx.AsyncClient, settings: Settings, rider: Account
) -> None:
    assert (await client.get(PROTECTED, headers=rider.headers)).status_code == 200
    for name, token in bad_tokens(settings, rider).items():
        for path in (PROTECTED, "/v1/rider/rides"):
            response = await client.get(path, headers=bearer(token))
            assert response.status_code == 401, (name, path, response.text)
            assert response.json()["error"] == "invalid_token", name
            assert response.headers["www-authenticate"] == "Bearer"


async def test_missing_or_malformed_authorization_header_is_401(
    client: httpx.AsyncClient, rider: Account
) -> None:
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {rider.token}"},
        {"Authorization": f"Token {rider.token}"},
    ):
        response = await client.get(PROTECTED, headers=headers)
        assert response.status_code == 401, headers
    # A token in the query string is for WebSockets only, never REST.
    response = await client.get(PROTECTED, params={"token": rider.token})
    assert response.status_code == 401


async def test_tokens_are_hs256_with_the_required_claims(
    settings: Settings, rider: Account
) -> None:
    header = jwt.get_unverified_header(rider.token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(
        rider.token,
        settings.jwt_secret,
        algorithms=["HS256"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert {"sub", "role", "iss", "aud", "iat", "exp"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_s <= 3600


async def test_password_hashes_are_argon2id_at_or_above_owasp_minimum(
    client: httpx.AsyncClient, app: Any
) -> None:
    account = await make_account(client, "driver")
    async with transaction(app.state) as session:
        stored = (
            await session.execute(
                text("SELECT password_hash FROM user_account WHERE id = :id"), {"id": account.id}
            )
        ).scalar_one()
    assert PASSWORD not in stored
    # $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
    _, variant, version, params, salt, _digest = stored.split("$")
    assert variant == "argon2id" and version == "v=19"
    values = dict(item.split("=") for item in params.split(","))
    assert int(values["m"]) >= 19_456, "memory below OWASP's 19 MiB"
    assert int(values["t"]) >= 2, "fewer than 2 iterations"
    assert int(values["p"]) >= 1
    assert len(base64.b64decode(salt + "==")) >= 16, "salt shorter than 16 bytes"
    assert PasswordHasher().verify(stored, PASSWORD)
    assert extract_parameters(stored).type is Type.ID


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second app whose login limit is 3 failures a minute (the suite's own is lifted)."""
    strict = settings.model_copy(update={"login_attempts_per_minute": 3})
    async with app_client(strict) as http:
        yield http


async def test_rest_routes_obey_the_settings_the_app_was_created_with(
    settings: Settings,
) -> None:
    """create_app(settings) once gave REST handlers the process's global settings instead."""
    custom = settings.model_copy(update={"access_token_ttl_s": 77})
    async with app_client(custom) as http:
        account = await make_account(http, "rider")
        token = await http.post(
            "/v1/auth/token", data={"username": account.email, "password": PASSWORD}
        )
    assert token.json()["expires_in"] == 77
    claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 77


async def test_failed_logins_are_rate_limited_with_429(strict_client: httpx.AsyncClient) -> None:
    victim = await make_account(strict_client, "rider")
    bystander = await make_account(strict_client, "rider")

    async def login(email: str, password: str) -> httpx.Response:
        return await strict_client.post(
            "/v1/auth/token", data={"username": email, "password": password}
        )

    for _ in range(3):
        assert (await login(victim.email, "wrong-password")).status_code == 401
    limited = await login(victim.email, "wrong-password")
    assert limited.status_code == 429 and limited.json()["error"] == "login_rate_limited"
    # Even the right password waits out the window: guessing cannot continue by luck.
    assert (await login(victim.email, PASSWORD)).status_code == 429
    # The limit is per account (case-insensitively), not global.
    assert (await login(victim.email.upper(), PASSWORD)).status_code == 429
    assert (await login(bystander.email, PASSWORD)).status_code == 200
    # Unknown emails are throttled the same way, so the limiter reveals nothing about who exists.
    ghost = f"ghost-{uuid.uuid4().hex[:8]}@test.coop"
    codes = [(await login(ghost, "whatever-123")).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


async def test_well_signed_tokens_of_missing_accounts_or_other_roles_are_401(
    client: httpx.AsyncClient, settings: Settings, rider: Account
) -> None:
    """A token can outlive its account; it then authorizes nothing (it was a 500 on quotes)."""
    ghost = forge(settings, {"sub": str(uuid.uuid4()), "role": "rider"})
    escalated = forge(settings, {"sub": rider.id, "role": "operator"})
    quote = {
        "pickup": {"lat": 40.758, "lng": -73.9855},
        "dropoff": {"lat": 40.7069, "lng": -74.0113},
    }
    for token in (ghost, escalated):
        headers = bearer(token)
        assert (await client.get(PROTECTED, headers=headers)).status_code == 401
        assert (
            await client.post("/v1/rider/quotes", json=quote, headers=headers)
        ).status_code == 401
        assert (await client.get("/v1/governance/members", headers=headers)).status_code == 401
