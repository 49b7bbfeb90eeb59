"""Events are written in the transaction that causes them and published only after its commit."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.database import after_commit
from dispatch.core.redis import Redis, RegionKeys
from dispatch.events.models import Event

log = logging.getLogger(__name__)

PENDING = "pending_events"


def record_event(
    session: AsyncSession,
    user_id: uuid.UUID,
    type: str,
    payload: dict[str, Any],
    ride_id: uuid.UUID | None = None,
) -> Event:
    event = Event(user_id=user_id, ride_id=ride_id, type=type, payload=payload)
    session.add(event)
    if PENDING not in session.info:
        session.info[PENDING] = []
        after_commit(session, lambda: publish_pending(session))
    session.info[PENDING].append(event)
    return event


def event_message(event: Event) -> dict[str, Any]:
    message: dict[str, Any] = {"type": event.type, "event_id": event.id}
    if event.ride_id is not None:
        message["ride_id"] = str(event.ride_id)
    message.update(event.payload)
    return message


async def publish_pending(session: AsyncSession) -> None:
    events: list[Event] = session.info.pop(PENDING, [])
    redis: Redis = session.info["redis"]
    keys = RegionKeys(session.info["region"])
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(keys.user_channel(event.user_id), json.dumps(event_message(event)))
            await pipe.execute()
    except RedisError:
        # The events are committed rows: a client that missed the live copy gets them on its
        # next (re)connect with `?after=`. The request that caused them has succeeded.
        log.warning("could not publish %d events; clients will replay them", len(events))


async def publish_ephemeral(
    redis: Redis, region: str, user_id: uuid.UUID, message: dict[str, Any]
) -> None:
    """Live-only messages (a driver's position): not worth a row, fine to miss."""
    await redis.publish(RegionKeys(region).user_channel(user_id), json.dumps(message))
