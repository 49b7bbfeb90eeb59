"""Market KPIs reported through Locust's own request event, so they land in its UI, CSV and HTML.

Every KPI is a row with request type `KPI`; its response time and failures mean:

- `request→offer`: ride request sent → first offer on a driver socket.
- `request→match`: ride request sent → `ride.matched` on the rider socket.
- `offer accepted`: offer received → answered. Declined, expired or withdrawn offers are
  failures, so the row's failure % is 1 − the acceptance rate.
- `ride outcome`: request → terminal event. `unfulfilled` is a failure, so the failure % is the
  unfulfilled share.
- `location accepted`: position sent → `location.ack`; its req/s is the accepted update rate.
- `ws reconnect`: socket dropped → back (a failure when it gave up).

Protocol rows use request types `HTTP` (Locust's own), `WS` (connects, accepts, server `error`
messages, unexpected closes). Thresholds on error rate count only the non-KPI rows.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from locust import events

KPI = "KPI"
WS = "WS"
REQUEST_TO_OFFER = "request→offer"
REQUEST_TO_MATCH = "request→match"
OFFER_ACCEPTED = "offer accepted"
RIDE_OUTCOME = "ride outcome"
LOCATION_ACCEPTED = "location accepted"
WS_RECONNECT = "ws reconnect"
TERMINAL = ("completed", "cancelled", "unfulfilled")


class Outcome(Exception):
    """A KPI sample that did not go the way the market wants (declined, unfulfilled, ...)."""


def fire(
    name: str,
    started: float,
    *,
    request_type: str = KPI,
    failure: str | None = None,
    length: int = 0,
) -> None:
    """One sample: `started` is a `time.monotonic()` value; the response time runs from it."""
    request_event: Any = events.request  # locust's EventHook is untyped
    request_event.fire(
        request_type=request_type,
        name=name,
        response_time=(time.monotonic() - started) * 1000,
        response_length=length,
        exception=Outcome(failure) if failure else None,
        context={},
    )


@dataclass
class RideRecord:
    ride_id: str
    rider_token: str
    requested: float
    status: str = "requested"
    offered: bool = False
    matched: bool = False
    terminal_seen: bool = False


@dataclass
class Ledger:
    """Every ride this Locust process requested, so none can go missing unnoticed."""

    rides: dict[str, RideRecord] = field(default_factory=dict)
    request_failures: int = 0
    server_errors: int = 0
    offers: Counter[str] = field(default_factory=Counter)
    reconciled: Counter[str] = field(default_factory=Counter)
    reconciled_once: bool = False

    def requested(self, ride_id: str, rider_token: str, sent_at: float) -> RideRecord:
        record = RideRecord(ride_id, rider_token, sent_at)
        self.rides[ride_id] = record
        return record

    def offered(self, ride_id: str) -> None:
        record = self.rides.get(ride_id)
        if record is not None and not record.offered:
            record.offered = True
            fire(REQUEST_TO_OFFER, record.requested)

    def status(self, ride_id: str, status: str, *, from_event: bool = True) -> None:
        record = self.rides.get(ride_id)
        if record is None:
            return
        if status == "matched" and not record.matched:
            record.matched = True
            fire(REQUEST_TO_MATCH, record.requested)
        if status in TERMINAL and from_event and not record.terminal_seen:
            record.terminal_seen = True
            fire(
                RIDE_OUTCOME,
                record.requested,
                failure="unfulfilled" if status == "unfulfilled" else None,
            )
        if record.status not in TERMINAL:
            record.status = status

    def counts(self) -> Counter[str]:
        return Counter(record.status for record in self.rides.values())

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        ended = sum(counts[s] for s in TERMINAL)
        return {
            "requested": len(self.rides),
            "by_status": dict(counts),
            "ended": ended,
            "unfulfilled_share": counts["unfulfilled"] / ended if ended else 0.0,
            "offers": dict(self.offers),
            "acceptance_rate": (
                self.offers["accepted"] / sum(self.offers.values()) if self.offers else 0.0
            ),
            "reconciled": dict(self.reconciled),
            "lost": self.reconciled["lost"],
            "request_failures": self.request_failures,
            "server_errors": self.server_errors,
        }


ledger = Ledger()
