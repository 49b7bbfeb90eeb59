"""Text PostgreSQL cannot store (NUL) is refused with a 422, never a 500 (found by schemathesis)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import PASSWORD, Account, bearer


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


async def registered(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body = {
        "email": f"text-{uuid.uuid4().hex[:8]}@test.coop",
        "password": PASSWORD,
        "name": "Plain Name",
        "role": "rider",
    } | fields
    return await client.post("/v1/auth/register", json=body)


async def me(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    token = await client.post("/v1/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    headers = bearer(token.json()["access_token"])
    return dict((await client.get("/v1/auth/me", headers=headers)).json())


async def test_phones_are_stored_as_e164_and_junk_is_refused(client: httpx.AsyncClient) -> None:
    """Issue 18.11: `phone` took markup, SQL and terminal escapes, and drivers saw them."""
    for written in ("(212) 555-0100", "+1 212 555 0100", "212.555.0100"):
        email = f"phone-{uuid.uuid4().hex[:8]}@test.coop"
        assert (await registered(client, email=email, phone=written)).status_code == 202
        assert (await me(client, email))["phone"] == "+12125550100"
    for junk in (
        "<script>alert(1)</script>",
        "'; DROP TABLE user_account;--",
        "\u001b[31m+12125550100",
        "12345",
        "call me maybe",
    ):
        refused = await registered(client, phone=junk)
        assert refused.status_code == 422, junk
        assert refused.json()["error"] == "invalid_phone"
        assert junk not in refused.text  # the error does not echo the input back


async def test_names_refuse_controls_overrides_and_blanks(client: httpx.AsyncClient) -> None:
    for name in (
        "Ana\u202eatem",
        "x\u2066y\u2069",
        "bell\u0007",
        "\u001b[2Jwiped",
        "   ",
        "\u3000",
    ):
        refused = await registered(client, name=name)
        assert refused.status_code == 422, repr(name)
        assert refused.json()["error"] == "validation_error"
    vehicle = {"make": "Toyota", "model": "Prius\u202e", "color": "green", "plate": "T1"}
    assert (await registered(client, role="driver", vehicle=vehicle)).status_code == 422
    # What NFKC can make plain is kept, made plain.
    email = f"nfkc-{uuid.uuid4().hex[:8]}@test.coop"
    assert (await registered(client, email=email, name="  Ｊｏｓé  ")).status_code == 202
    assert (await me(client, email))["name"] == "José"


async def test_lookalike_emails_are_one_account_or_refused(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    owner = f"rider{tag}@test.coop"
    assert (await registered(client, email=owner)).status_code == 202
    # NFKC folds ℝ into R: the same account, so nothing is created and the owner's password holds.
    twin = await registered(client, email=f"ℝider{tag}@test.coop", password="twin-password-1")
    assert twin.status_code == 202
    token = await client.post(
        "/v1/auth/token", data={"username": owner, "password": "twin-password-1"}
    )
    assert token.status_code == 401
    # Letters that pass for ASCII ones (dotless ı, Cyrillic і and а) cannot be folded: refused.
    for lookalike in (f"rıder{tag}@test.coop", f"rіder{tag}@test.coop", f"rider{tag}@tеst.coop"):
        refused = await registered(client, email=lookalike)
        assert refused.status_code == 422, lookalike
        assert "could pass for another" in refused.text
    # Letters that look like no ASCII letter stay welcome.
    assert (await registered(client, email=f"josé{tag}@test.coop")).status_code == 202


async def test_login_normalises_the_email_as_registration_does(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    assert (await registered(client, email=f"  Spaced{tag}@Test.coop ")).status_code == 202
    for typed in (f" spaced{tag}@test.coop  ", f"SPACED{tag}@TEST.COOP", f"ｓpaced{tag}@test.coop"):
        assert (await me(client, typed))["email"] == f"spaced{tag}@test.coop", typed


async def test_cancel_reasons_refuse_escapes_and_overrides(client: httpx.AsyncClient) -> None:
    """A reason reaches the other side of the ride: the same class of hole as names."""
    from tests.fixtures.dispatching import request_ride

    rider, ride_id = await request_ride(client, 40.758, -73.9855)
    path = f"/v1/rider/rides/{ride_id}/cancel"
    for reason in ("\u001b[2Jcleared", "late\u202e", "   "):
        refused = await client.post(path, json={"reason": reason}, headers=rider.headers)
        assert refused.status_code == 422, repr(reason)
    kept = await client.post(path, json={"reason": "  late,\nsorry  "}, headers=rider.headers)
    assert kept.status_code == 200 and kept.json()["cancel_reason"] == "late,\nsorry"


async def test_limits_hold_after_normalisation(client: httpx.AsyncClient) -> None:
    """NFKC turns U+FDFA into 18 characters: a length checked before it let the database refuse
    the row (a 500 on a new email, a 202 on a taken one: who has an account, in one request)."""
    expands = "\ufdfa"
    vehicle = {"make": expands * 60, "model": "Prius", "color": "green", "plate": "T1"}
    # And the limit holds for the text as sent, as the schema says, though NFKC would shrink it.
    shrinks = "e\u0301" * 61
    for fields in (
        {"name": expands * 120},
        {"role": "driver", "vehicle": vehicle},
        {"name": shrinks},
    ):
        refused = await registered(client, **fields)
        assert refused.status_code == 422, fields
        assert refused.json()["error"] == "validation_error"
    # Within the limit once expanded: kept, expanded.
    email = f"nfkc-long-{uuid.uuid4().hex[:8]}@test.coop"
    assert (await registered(client, email=email, name=expands * 6)).status_code == 202
    assert len((await me(client, email))["name"]) == 18 * 6
