"""one open ride per rider, decided by PostgreSQL (concurrent requests raced the check)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OPEN = "status IN ('requested', 'matched', 'arrived', 'in_progress')"


# Given to the extra rides the race left open (see upgrade), shown to the rider and driver.
EXTRA_RIDE_REASON = "a newer request of yours replaced this one"

# The extra open rides of each rider: all but the one kept, which is the one furthest along
# (nobody may cancel a ride in progress), then the newest request. One literal: bandit reads any
# composed SQL string as an injection risk.
_EXTRA_RIDES = """
SELECT id, rider_id, driver_id, status FROM (
    SELECT id, rider_id, driver_id, status, row_number() OVER (
        PARTITION BY rider_id
        ORDER BY CASE status WHEN 'in_progress' THEN 0 WHEN 'arrived' THEN 1
                             WHEN 'matched' THEN 2 ELSE 3 END,
                 requested_at DESC, id
    ) AS rank
    FROM ride WHERE status IN ('requested', 'matched', 'arrived', 'in_progress')
) AS ranked WHERE rank > 1
"""


def upgrade() -> None:
    """The index refuses a second open ride; riders who got several before it (concurrent
    requests, issue 18.2) keep one, and the others are cancelled as the rides service cancels:
    pending offers withdrawn, `ride.cancelled` to the rider and driver, `offer.withdrawn` to each
    offered driver, the rider's contact cleared from the driver's `ride.assigned`. The events are
    rows only (no Redis here): clients get them on their next replay (`?after=`)."""
    bind = op.get_bind()
    extra = bind.execute(sa.text(_EXTRA_RIDES)).all()
    # Two trips under way at once for one rider: neither may be cancelled, so a person decides.
    under_way = [str(ride_id) for ride_id, _, _, status in extra if status == "in_progress"]
    if under_way:
        raise RuntimeError(
            "riders with more than one trip in progress: complete these rides, then migrate "
            f"again: {', '.join(under_way)}"
        )
    payload = json.dumps(
        {"status": "cancelled", "cancelled_by": "system", "reason": EXTRA_RIDE_REASON}
    )
    for ride_id, rider_id, driver_id, _ in extra:
        withdrawn = bind.execute(
            sa.text(
                "UPDATE offer SET status = 'withdrawn', responded_at = now() "
                "WHERE ride_id = :ride AND status = 'pending' RETURNING id, driver_id"
            ),
            {"ride": ride_id},
        ).all()
        bind.execute(
            sa.text(
                "UPDATE ride SET status = 'cancelled', ended_at = now(), "
                "cancelled_by = 'system', cancel_reason = :reason WHERE id = :ride"
            ),
            {"ride": ride_id, "reason": EXTRA_RIDE_REASON},
        )
        events = [
            (driver, "offer.withdrawn", json.dumps({"offer_id": str(offer)}))
            for offer, driver in withdrawn
        ]
        events.append((rider_id, "ride.cancelled", payload))
        if driver_id is not None:
            events.append((driver_id, "ride.cancelled", payload))
            bind.execute(
                sa.text(
                    "UPDATE event SET payload = jsonb_set(payload, '{ride,rider}', 'null') "
                    "WHERE user_id = :driver AND ride_id = :ride AND type = 'ride.assigned'"
                ),
                {"driver": driver_id, "ride": ride_id},
            )
        for user_id, kind, body in events:
            bind.execute(
                sa.text(
                    "INSERT INTO event (user_id, ride_id, type, payload) "
                    "VALUES (:user, :ride, :type, CAST(:payload AS jsonb))"
                ),
                {"user": user_id, "ride": ride_id, "type": kind, "payload": body},
            )
    op.create_index(
        "uq_ride_rider_open",
        "ride",
        ["rider_id"],
        unique=True,
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_ride_rider_open", table_name="ride", postgresql_where=sa.text(OPEN))
