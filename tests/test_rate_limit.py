"""Who a per-address budget counts, and what a login does when Redis fails mid-way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from dispatch.core import rate_limit
from dispatch.core.rate_limit import address_group
from tests.conftest import PASSWORD, make_account


@pytest.mark.parametrize(
    ("host", "group"),
    [
        # One subscriber's /64: every address in it is one budget.
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:7", "2001:db8:1:2::/64"),
        # The next /64 is someone else.
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
        # IPv4, also written as IPv4-mapped IPv6, is the exact address.
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("203.0.113.8", "203.0.113.8"),
        # Not an address (a test client's name, a unix socket): as given.
        ("testclient", "testclient"),
    ],
)
def test_ipv6_addresses_share_their_64s_budget(host: str, group: str) -> None:
    assert address_group(host) == group


async def test_a_right_password_logs_in_when_redis_fails_after_the_claim(
    client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt is counted before the password is checked and handed back after; Redis
    failing in between (the argon2 check takes ~30 ms) turned a right password into a 503."""
    user = await make_account(client, "rider")
    redis = app.state.redis
    real_eval = redis.eval

    async def eval_failing_give_back(script: str, *args: Any) -> Any:
        if script == rate_limit._GIVE_BACK:
            raise RedisConnectionError("connection reset by peer")
        return await real_eval(script, *args)

    monkeypatch.setattr(redis, "eval", eval_failing_give_back)
    token = await client.post("/v1/auth/token", data={"username": user.email, "password": PASSWORD})
    assert token.status_code == 200, token.text
