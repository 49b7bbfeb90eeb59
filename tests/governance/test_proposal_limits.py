"""Bylaw limits a probe walked past (issue 18): how late a proposal may take effect, how many
open proposals one member may hold, and payloads whose types were quietly coerced."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from dispatch.rides.repository import RideRepository
from governance.tasks import close_due_proposals
from tests.governance.conftest import MakeMembers, closes_in
from tests.governance.helpers import DAY, open_proposal, proposal_body

POST = "/v1/governance/proposals"


async def test_effective_at_is_capped_by_a_bylaw(
    client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    (author,) = await make_members(1)
    bylaws = (await client.get("/v1/governance/bylaws")).json()
    delay = bylaws["max_effective_delay_s"]
    assert delay == 90 * DAY
    for effective_at in ("9999-12-31T00:00:00Z", closes_in(2 * DAY + delay + 3600)):
        far = await client.post(
            POST, json=proposal_body(effective_at=effective_at), headers=author.headers
        )
        assert far.status_code == 422, far.text
        assert far.json()["error"] == "effective_at"
        assert "max_effective_delay_s" in far.json()["detail"]
    within = await client.post(
        POST, json=proposal_body(effective_at=closes_in(2 * DAY + delay)), headers=author.headers
    )
    assert within.status_code == 201, within.text


async def test_opens_at_cap_is_the_same_kind_of_bylaw(
    client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    (author,) = await make_members(1)
    ahead = (await client.get("/v1/governance/bylaws")).json()["max_schedule_ahead_s"]
    late = await client.post(
        POST,
        json=proposal_body(opens_at=closes_in(ahead + 3600), closes_at=closes_in(ahead + 2 * DAY)),
        headers=author.headers,
    )
    assert late.status_code == 422 and late.json()["error"] == "voting_window", late.text


async def test_open_proposals_per_member_are_limited(
    app: Any, client: httpx.AsyncClient, make_members: MakeMembers, travel: Any
) -> None:
    author, other = await make_members(2)
    limit = (await client.get("/v1/governance/bylaws")).json()["max_open_proposals_per_member"]
    assert limit == 3
    travel(-timedelta(days=3))
    # Drafted all at once: the limit holds under concurrency too.
    answers = await asyncio.gather(
        *(client.post(POST, json=proposal_body(), headers=author.headers) for _ in range(8))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * limit + [409] * (8 - limit), [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409).json()
    assert refused["error"] == "too_many_open_proposals"
    assert str(limit) in refused["detail"]
    # A scheduled proposal counts as open.
    scheduled = await client.post(
        POST,
        json=proposal_body(opens_at=closes_in(3600), closes_at=closes_in(3600 + 2 * DAY)),
        headers=author.headers,
    )
    assert scheduled.status_code == 409
    # Others are not held back by this member's drafts.
    assert (await client.post(POST, json=proposal_body(), headers=other.headers)).status_code == 201
    # Once voting has closed, the member may draft again.
    travel(timedelta(days=2, seconds=1))
    await close_due_proposals(app.state)
    again = await client.post(POST, json=proposal_body(), headers=author.headers)
    assert again.status_code == 201, again.text


async def test_proposal_fields_are_not_coerced(
    client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    (author,) = await make_members(1)
    for changes in (
        {"base_cents": True},
        {"per_km_cents": False},
        {"minimum_cents": "900"},
        {"booking_fee_cents": 250.0},
        {"commission_cap_cents": True},
        {"commission_rate": "-0"},
        {"commission_rate": "-0.0000"},
        {"commission_rate": -0.0},
        {"commission_rate": True},
        {"commission_rate": " 0.08"},
        {"commission_rate": "8e-2"},
        {"commission_rate": "+0.08"},
    ):
        refused = await client.post(
            POST, json=proposal_body(changes=changes), headers=author.headers
        )
        assert refused.status_code == 422, (changes, refused.text)
        assert refused.json()["error"] == "validation_error", refused.text
    # What the docs promise still works: integers, and the rate as a number or a plain string.
    for changes in ({"base_cents": 0}, {"commission_rate": "0.08"}, {"commission_rate": 0}):
        accepted = await client.post(
            POST, json=proposal_body(changes=changes), headers=author.headers
        )
        assert accepted.status_code == 201, (changes, accepted.text)


async def test_impact_preview_hides_a_small_group_of_drivers(
    client: httpx.AsyncClient, make_members: MakeMembers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one driver in the window, the preview's earnings were that driver's 30-day pay,
    shown to every member. The window's rides are set here so the group size is known."""
    (author,) = await make_members(1)
    proposal = await open_proposal(client, author, {"commission_rate": 0.05})
    minimum = (await client.get("/v1/governance/bylaws")).json()["min_impact_drivers"]
    assert minimum == 5
    url = f"/v1/governance/proposals/{proposal['id']}/impact"

    async def preview(drivers: int) -> dict[str, Any]:
        rides = [(uuid.uuid4(), 5_000 + 700 * i, 900 + 60 * i) for i in range(drivers)]

        async def completed_trips(self: Any, since: Any, until: Any) -> list[Any]:
            return rides

        monkeypatch.setattr(RideRepository, "completed_trips", completed_trips)
        answer = await client.get(url, headers=author.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    for small in (1, 2, minimum - 1):
        hidden = await preview(small)
        assert hidden["drivers"] == small and hidden["suppressed"] is True
        assert hidden["before"] is None and hidden["after"] is None
    shown = await preview(minimum)
    assert shown["suppressed"] is False and shown["before"]["rides"] == minimum
    assert shown["before"]["median_driver_earnings_cents"] > 0
    nobody = await preview(0)  # nothing to protect: zeros, not a secret
    assert nobody["suppressed"] is False and nobody["before"]["rides"] == 0


async def test_titles_and_rationales_shown_to_members_are_plain_text(
    client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    (author,) = await make_members(1)
    for field, value in (
        ("title", "\u202eevah uoy tub"),
        ("title", "\x1b[31mRaise\x1b[0m fares"),
        ("title", "    "),
        ("title", "Raise\u0000fares"),
        ("title", "\ufdfa" * 200),  # 3,600 characters once NFKC has expanded it
        # 10,002 characters as sent, 5,001 once NFKC composes them: over the schema's limit.
        ("rationale", "e\u0301" * 5001),
        ("rationale", "Because \x1b]0;owned\x07"),
        ("rationale", "fine \u2066hidden\u2069"),
        ("rationale", " \n\t "),
    ):
        refused = await client.post(
            POST, json=proposal_body(**{field: value}), headers=author.headers
        )
        assert refused.status_code == 422, (field, value, refused.text)
    kept = await client.post(
        POST,
        json=proposal_body(title="  Ｒaise the per-km rate ", rationale="Fuel.\nAnd tyres.\n"),
        headers=author.headers,
    )
    assert kept.status_code == 201, kept.text
    assert kept.json()["title"] == "Raise the per-km rate"
    assert kept.json()["rationale"] == "Fuel.\nAnd tyres."


async def test_proposal_times_are_iso_8601_not_unix_timestamps(
    client: httpx.AsyncClient, make_members: MakeMembers
) -> None:
    """The docs say date-times with a timezone; pydantic would also read a number (or a string
    of digits) as a Unix timestamp, which is how the query cursors were fixed before."""
    (author,) = await make_members(1)
    in_two_days = int((datetime.now(UTC) + timedelta(days=2)).timestamp())
    for field, value in (
        ("closes_at", in_two_days),
        ("closes_at", float(in_two_days)),
        ("closes_at", str(in_two_days)),
        ("effective_at", in_two_days + DAY),
        ("opens_at", in_two_days - DAY),
    ):
        refused = await client.post(
            POST, json=proposal_body(**{field: value}), headers=author.headers
        )
        assert refused.status_code == 422, (field, value, refused.text)
        assert refused.json()["error"] == "validation_error"
