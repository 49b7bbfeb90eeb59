"""Who a per-address budget counts."""

from __future__ import annotations

import pytest

from dispatch.core.rate_limit import address_group


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
