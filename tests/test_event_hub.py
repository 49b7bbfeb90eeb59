"""The process's one Redis subscription serves every socket: no message may end it."""

from __future__ import annotations

import asyncio
import json
import uuid

import redis.asyncio as aioredis

from dispatch.events.hub import EventHub


async def test_a_message_the_hub_cannot_decode_stops_nobody(redis: aioredis.Redis) -> None:
    hub = EventHub(redis)
    await hub.start()
    victim = f"coop:{{hub-{uuid.uuid4().hex[:6]}}}:user:victim"
    other = f"coop:{{hub-{uuid.uuid4().hex[:6]}}}:user:other"
    try:
        async with hub.listen(victim, 16) as victim_queue, hub.listen(other, 16) as other_queue:
            # Nested past the decoder's recursion limit (it raised RecursionError, which the
            # reader did not catch: the task ended, and with it live events for every socket).
            await redis.publish(victim, "[" * 100_000 + "]" * 100_000)
            await redis.publish(victim, "1")  # JSON, but not an object: sockets read `type`
            await redis.publish(other, json.dumps({"type": "after", "n": 1}))
            await redis.publish(victim, json.dumps({"type": "after", "n": 2}))
            assert (await asyncio.wait_for(other_queue.get(), 5))["n"] == 1
            assert (await asyncio.wait_for(victim_queue.get(), 5))["n"] == 2
            assert victim_queue.empty()
    finally:
        await hub.stop()
