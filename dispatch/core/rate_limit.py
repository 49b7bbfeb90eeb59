"""Fixed-window budgets in Redis: a counter per (purpose, subject) that expires with its window.

Keys share the `{limits}` hash tag, so one check over several budgets stays in one cluster slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from dispatch.core.errors import TooManyRequests
from dispatch.core.redis import Redis


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


async def refuse_if_spent(redis: Redis, budgets: Sequence[Budget], message: str, code: str) -> None:
    """Refuse (429 with Retry-After) when any budget is used up; counts nothing."""
    async with redis.pipeline(transaction=False) as pipe:
        for budget in budgets:
            pipe.get(budget.key)
            pipe.ttl(budget.key)
        answers = await pipe.execute()
    used = [int(answers[2 * i] or 0) for i in range(len(budgets))]
    ttls = [int(answers[2 * i + 1]) for i in range(len(budgets))]
    _refuse(
        budgets, [u >= b.limit for u, b in zip(used, budgets, strict=True)], ttls, message, code
    )


async def spend(redis: Redis, budgets: Sequence[Budget]) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        for budget in budgets:
            pipe.incr(budget.key)
            pipe.expire(budget.key, budget.window_s, nx=True)
        await pipe.execute()


async def take(redis: Redis, budgets: Sequence[Budget], message: str, code: str) -> None:
    """Count this request against every budget; refuse it (429) if any is now over its limit."""
    async with redis.pipeline(transaction=True) as pipe:
        for budget in budgets:
            pipe.incr(budget.key)
            pipe.expire(budget.key, budget.window_s, nx=True)
            pipe.ttl(budget.key)
        answers = await pipe.execute()
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
    """The peer's address; behind a proxy in uvicorn's `forwarded_allow_ips`, the client's."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]
