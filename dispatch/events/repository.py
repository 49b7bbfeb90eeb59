from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.events.models import Event


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def missed(
        self, user_id: uuid.UUID, after: int, limit: int, since: datetime | None = None
    ) -> Sequence[Event]:
        """The user's events past `after`, oldest first, at most `limit`; with `since`, only
        those created from then on (a socket's replay after it reconnects, or after Redis lost
        live messages)."""
        query = (
            select(Event)
            .where(Event.user_id == user_id, Event.id > after)
            .order_by(Event.id)
            .limit(limit)
        )
        if since is not None:
            query = query.where(Event.created_at >= since)
        return (await self.session.execute(query)).scalars().all()

    async def clear_rider_contact(self, driver_id: uuid.UUID, ride_id: uuid.UUID) -> None:
        """Null `ride.rider` in the driver's stored `ride.assigned` events of the ride."""
        await self.session.execute(
            update(Event)
            .where(
                Event.user_id == driver_id, Event.ride_id == ride_id, Event.type == "ride.assigned"
            )
            .values(
                payload=func.jsonb_set(
                    Event.payload,
                    literal_column("'{ride,rider}'::text[]"),
                    literal_column("'null'::jsonb"),
                )
            )
            .execution_options(synchronize_session=False)
        )
