from __future__ import annotations

import uuid

from sqlalchemy import func, literal_column, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.events.models import Event


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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
