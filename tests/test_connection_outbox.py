"""A socket's send queue when its client reads too slowly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from dispatch.core.security import TokenClaims
from dispatch.core.settings import Settings
from dispatch.realtime.connection import Connection


def test_an_overflowing_send_queue_drops_the_oldest_and_asks_for_a_resync() -> None:
    connection = Connection(
        None,  # type: ignore[arg-type]  # send() never touches the socket
        TokenClaims(user_id=uuid.uuid4(), role="driver", expires_at=datetime.now(UTC)),
        Settings(ws_send_queue=3),
    )
    for i in range(5):
        connection.send({"type": "location.ack", "id": i})
    queued: list[dict[str, Any]] = []
    while not connection.outbox.empty():
        frame = connection.outbox.get_nowait()
        assert frame is not None
        queued.append(frame)
    assert len(queued) == 3
    assert queued[-1] == {"type": "location.ack", "id": 4, "seq": 5}
    assert {"type": "resync", "reason": "send queue overflowed"} in queued
