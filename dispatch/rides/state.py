"""The trip state machine: which actor may move a ride from which status to which."""

from __future__ import annotations

import enum

from dispatch.rides.models import RideStatus


class Actor(enum.StrEnum):
    rider = "rider"
    driver = "driver"
    dispatcher = "dispatcher"


S = RideStatus
TRANSITIONS: dict[tuple[RideStatus, RideStatus], frozenset[Actor]] = {
    (S.requested, S.matched): frozenset({Actor.driver}),
    (S.requested, S.cancelled): frozenset({Actor.rider}),
    (S.requested, S.unfulfilled): frozenset({Actor.dispatcher}),
    (S.matched, S.arrived): frozenset({Actor.driver}),
    (S.matched, S.cancelled): frozenset({Actor.rider}),
    (S.matched, S.requested): frozenset({Actor.driver}),
    (S.arrived, S.in_progress): frozenset({Actor.driver}),
    (S.arrived, S.cancelled): frozenset({Actor.rider}),
    (S.arrived, S.requested): frozenset({Actor.driver}),
    (S.in_progress, S.completed): frozenset({Actor.driver}),
}


def allowed(current: RideStatus, target: RideStatus, actor: Actor) -> bool:
    return actor in TRANSITIONS.get((current, target), frozenset())
