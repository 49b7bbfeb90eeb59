"""Events go out on the channels of the region the process serves, as its sockets listen."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from dispatch.core.database import transaction
from dispatch.core.redis import RegionKeys
from dispatch.core.settings import Settings
from dispatch.core.state import ProcessState
from dispatch.events.outbox import publish_ephemeral, record_event
from tests.conftest import make_account


async def next_message(pubsub: Any) -> dict[str, Any] | None:
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            return dict(message)
    return None


async def test_events_publish_on_the_channels_of_the_state_s_region(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """They once went to the global settings' region: a process created with its own settings
    (create_app(settings), as sockets subscribe) published where nobody listened."""
    rider = await make_account(client, "rider")
    elsewhere = settings.model_copy(update={"region": "outbox-elsewhere"})
    state = ProcessState.open(elsewhere, pool_size=1)
    channel = RegionKeys("outbox-elsewhere").user_channel(rider.id)
    pubsub = state.redis.pubsub()
    try:
        await pubsub.subscribe(channel)
        async with transaction(state) as session:
            record_event(session, uuid.UUID(rider.id), "test.recorded", {})
        recorded = await next_message(pubsub)
        assert recorded is not None and "test.recorded" in str(recorded["data"])
        await publish_ephemeral(state.redis, "outbox-elsewhere", uuid.UUID(rider.id), {"t": 1})
        live = await next_message(pubsub)
        assert live is not None and live["data"] in ('{"t": 1}', b'{"t": 1}')
    finally:
        await pubsub.aclose()
        await state.close()
