"""One Redis subscription per process, fanned out to the local WebSocket connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from dispatch.core.redis import Redis

log = logging.getLogger(__name__)


KEEPALIVE = "coop:hub:keepalive"
RESYNC = "hub.resync"
# Replays after a Redis outage look this far behind the moment the hub noticed it, for events
# whose transactions started before it and committed during it.
RESYNC_MARGIN = timedelta(seconds=60)


class EventHub:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: PubSub | None = None
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(KEEPALIVE)
        self._reader = asyncio.create_task(self._read_forever())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def listen(
        self, channel: str, maxsize: int
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        assert self._pubsub is not None
        async with self._lock:
            if not self._listeners[channel]:
                try:
                    await self._pubsub.subscribe(channel)
                except RedisError:
                    # Redis is away: the reader resubscribes every channel when it is back, and
                    # the socket replays what it missed from the event log.
                    log.warning("could not subscribe to %s; will on reconnect", channel)
            self._listeners[channel].add(queue)
        try:
            yield queue
        finally:
            async with self._lock:
                self._listeners[channel].discard(queue)
                if not self._listeners[channel]:
                    del self._listeners[channel]
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)

    async def _read_forever(self) -> None:
        lost_at: datetime | None = None
        while True:
            assert self._pubsub is not None
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                if lost_at is None:
                    lost_at = datetime.now(UTC)
                    log.warning("event hub lost Redis; resubscribing", exc_info=True)
                await asyncio.sleep(0.5)
                if await self._resubscribe():
                    log.warning("event hub resubscribed to %d channels", len(self._listeners))
                    self._tell_listeners_to_resync(lost_at)
                    lost_at = None
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            try:
                payload = json.loads(message["data"])
            except (TypeError, ValueError, RecursionError):
                # One message this reader cannot take must not end it: it serves every socket.
                log.warning("event hub skipped a message it could not decode on %s", channel)
                continue
            if not isinstance(payload, dict):
                continue  # every socket's pump reads `type` from a JSON object
            for queue in list(self._listeners.get(channel, ())):
                if queue.full():
                    # A slow client loses live messages, not durable ones: it resyncs from event_id.
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait(payload)

    async def _resubscribe(self) -> bool:
        """A fresh subscription to every channel with listeners; False while Redis is away."""
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._pubsub.subscribe(KEEPALIVE, *self._listeners)
            except RedisError:
                return False
            return True

    def _tell_listeners_to_resync(self, lost_at: datetime) -> None:
        """Live messages published while Redis was away are gone: sockets replay the log."""
        marker = {"type": RESYNC, "since": (lost_at - RESYNC_MARGIN).isoformat()}
        for queues in self._listeners.values():
            for queue in queues:
                if queue.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait(marker)
