"""Events are written in the transaction that causes them and published only after its commit."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hiredis import pack_command
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.database import after_commit
from dispatch.core.redis import Redis, RegionKeys, send_packed
from dispatch.events.models import Event

log = logging.getLogger(__name__)

PENDING = "pending_events"
WRITTEN = "written_events"


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


@dataclass(frozen=True)
class WrittenEvent:
    """An event a statement wrote itself (`INSERT ... RETURNING id`): what publishing it needs.

    `payload` is the JSON text of the object stored in the row. Batches write thousands of
    these; building `Event` objects for them cost more than the writes.
    """

    id: int
    user_id: uuid.UUID | str
    ride_id: uuid.UUID | str | None
    type: str
    payload: str


def message_text(event: WrittenEvent) -> str:
    """`json.dumps(event_message(...))` of the same event, without decoding the payload."""
    head = f'{{"type": {json.dumps(event.type)}, "event_id": {event.id}'
    if event.ride_id is not None:
        head += f', "ride_id": "{event.ride_id}"'
    rest = event.payload.strip()[1:]
    return head + ("}" if rest.strip() == "}" else ", " + rest)


def publish_written(session: AsyncSession, events: Sequence[WrittenEvent]) -> None:
    """Publish events written by SQL once the session commits, after those queued before."""
    if events:
        publish_packed(session, pack_publishes(events, session.info["region"]))


def publish_packed(session: AsyncSession, packed: bytes) -> None:
    """Send `pack_publishes` output once the session commits (a batch packs off the loop)."""
    if WRITTEN not in session.info:
        session.info[WRITTEN] = []
        after_commit(session, lambda: _publish_written(session))
    session.info[WRITTEN].append(packed)


# One command, one reply, whatever the batch: reading thousands of PUBLISH replies one by one
# cost more than Redis's work. ARGV holds channel, message, channel, message, ...
_PUBLISH_ALL = """
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""


def pack_publishes(events: Sequence[WrittenEvent], region: str) -> bytes:
    """One pre-packed command publishing each event on its user's channel (the channels of
    `region`, the one the session publishes to), in order."""
    keys = RegionKeys(region)
    command: list[str | int] = ["EVAL", _PUBLISH_ALL, 0]
    for event in events:
        command += (keys.user_channel(event.user_id), message_text(event))
    # (hiredis's stub types the argument as a 1-tuple.)
    packed: bytes = pack_command(tuple(command))  # type: ignore[arg-type]
    return packed


async def _publish_written(session: AsyncSession) -> None:
    commands: list[bytes] = session.info.pop(WRITTEN, [])
    redis: Redis = session.info["redis"]
    try:
        await send_packed(redis, b"".join(commands), replies=len(commands))
    except (RedisError, OSError):
        # As for `publish_pending`: the rows are committed, clients replay what they missed.
        log.warning(
            "could not publish %d batches of events; clients will replay them", len(commands)
        )
