"""Fixed-window budgets in Redis: a counter per (purpose, subject) that expires with its window.

Keys share the `{limits}` hash tag, so one check over several budgets stays in one cluster slot.
Budgets that only slow abuse down (sign-ups, quotes) let requests through while Redis is
unreachable: Redis holds nothing a ride needs, so its outage must not stop riders asking for one.
Login budgets stay shut, as they always were.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.exceptions import ConnectionError as RedisUnreachable
from redis.exceptions import TimeoutError as RedisTimedOut

from dispatch.core.errors import TooManyRequests
from dispatch.core.redis import Redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    purpose: str
    subject: str
    limit: int
    window_s: int = 60

    @property
    def key(self) -> str:
        # Subjects are emails and addresses: hashed, so Redis holds no one's email in clear.
        digest = hashlib.sha256(self.subject.encode()).hexdigest()[:32]
        return f"coop:{{limits}}:{self.purpose}:{digest}"


# Every budget checked and, only if none is spent, every one counted: in one step, so a burst of
# simultaneous requests cannot all read "not spent yet" before any of them counts. A refused
# request counts nothing (a stranger refused for their own budget uses none of the account's).
# Answers, per key, 1 if it is spent (else 0) and its TTL.
_CLAIM = """
local answer = {}
local spent = false
for i, key in ipairs(KEYS) do
    local over = tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[2 * i - 1])
    spent = spent or over
    answer[2 * i - 1] = over and 1 or 0
    answer[2 * i] = redis.call('TTL', key)
end
if not spent then
    for i, key in ipairs(KEYS) do
        redis.call('INCR', key)
        redis.call('EXPIRE', key, ARGV[2 * i], 'NX')
    end
end
return answer
"""

# A counted attempt handed back: never below zero, never a key without its expiry.
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
    if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


async def claim(redis: Redis, budgets: Sequence[Budget], message: str, code: str) -> None:
    """Count this attempt against every budget, or refuse it (429 with Retry-After) without
    counting when any budget is used up. Atomic: see `_CLAIM`."""
    args: list[int] = []
    for budget in budgets:
        args += [budget.limit, budget.window_s]
    keys = [budget.key for budget in budgets]
    answer = await redis.eval(_CLAIM, len(keys), *keys, *args)
    over = [bool(answer[2 * i]) for i in range(len(budgets))]
    ttls = [int(answer[2 * i + 1]) for i in range(len(budgets))]
    _refuse(budgets, over, ttls, message, code)


async def give_back(redis: Redis, budgets: Sequence[Budget]) -> None:
    """Uncount an attempt `claim` counted (a login that turned out right). Best effort: the
    password was right, so a Redis that failed since the claim must not refuse the login; the
    attempt then stays counted until its window ends."""
    try:
        await redis.eval(_GIVE_BACK, len(budgets), *(b.key for b in budgets))
    except (RedisUnreachable, RedisTimedOut, OSError):
        log.warning("a right login's attempt stays counted: Redis is unreachable")


async def take(
    redis: Redis,
    budgets: Sequence[Budget],
    message: str,
    code: str,
    *,
    open_when_unreachable: bool = False,
) -> None:
    """Count this request against every budget; refuse it (429) if any is now over its limit."""
    try:
        async with redis.pipeline(transaction=True) as pipe:
            for budget in budgets:
                pipe.incr(budget.key)
                pipe.expire(budget.key, budget.window_s, nx=True)
                pipe.ttl(budget.key)
            answers = await pipe.execute()
    except (RedisUnreachable, RedisTimedOut, OSError):
        if not open_when_unreachable:
            raise
        log.warning("rate limits unchecked: Redis is unreachable (%s)", budgets[0].purpose)
        return
    used = [int(answers[3 * i]) for i in range(len(budgets))]
    ttls = [int(answers[3 * i + 2]) for i in range(len(budgets))]
    _refuse(budgets, [u > b.limit for u, b in zip(used, budgets, strict=True)], ttls, message, code)


def _refuse(
    budgets: Sequence[Budget], over: list[bool], ttls: list[int], message: str, code: str
) -> None:
    waits = [
        ttl if ttl > 0 else budget.window_s
        for budget, is_over, ttl in zip(budgets, over, ttls, strict=True)
        if is_over
    ]
    if waits:
        raise TooManyRequests(message, code=code, retry_after_s=max(waits))


def client_address(request: Request) -> str:
    """Who a per-address budget counts: the peer's address (behind a proxy listed in
    COOP_FORWARDED_ALLOW_IPS, the client's), an IPv6 one as its /64."""
    return address_group(request.client.host) if request.client else "unknown"


def address_group(host: str) -> str:
    """An IPv6 address as its /64 network: one subscriber is usually given a whole /64, so
    counting exact addresses let them take a new budget with each of its 2^64 addresses. IPv4
    (also IPv4-mapped IPv6) stays the exact address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


ClientAddress = Annotated[str, Depends(client_address)]
