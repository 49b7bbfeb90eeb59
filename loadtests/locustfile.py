"""coop-dispatch load test: drivers and riders over the real protocol, market KPIs, thresholds.

    coop-dispatch seed --riders 200 --drivers 800          # accounts + credentials file
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000            # web UI on :8089
    locust -f loadtests/locustfile.py --host ... --headless -u 500 -r 50 -t 5m \\
        --html report.html --csv run --summary-file summary.md

`make loadtest` wraps all of it (and can start a local stack). See docs/loadtesting.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from locust import events
from locust.env import Environment
from locust.event import EventHook
from locust.runners import MasterRunner

from loadtests import kpi, report, thresholds
from loadtests.seeding import DEFAULT_CREDENTIALS
from loadtests.trip_feed import DEFAULT_TRIPS, DemandFeed
from loadtests.users import DriverUser, RiderUser, Shared

__all__ = ["DriverUser", "RiderUser"]

log = logging.getLogger("coop-loadtest")
Handler = TypeVar("Handler", bound=Callable[..., None])


def listener(hook: EventHook) -> Callable[[Handler], Handler]:
    """`@hook.add_listener`, typed: locust's EventHook is not."""

    def register(handler: Handler) -> Handler:
        cast(Any, hook).add_listener(handler)
        return handler

    return register


@listener(events.init_command_line_parser)
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("coop-dispatch scenario")
    group.add_argument(
        "--credentials", default=str(DEFAULT_CREDENTIALS), help="from `coop-dispatch seed`"
    )
    group.add_argument(
        "--real-login",
        action="store_true",
        default=False,
        help="log in with the password instead of seeded tokens",
    )
    group.add_argument(
        "--trips", default=str(DEFAULT_TRIPS), help="trip file (NYC TLC trip-record CSV)"
    )
    group.add_argument("--trips-skip-minutes", type=float, default=10.0, help="replay from here")
    group.add_argument("--trips-window-minutes", type=float, default=25.0, help="then loop")
    group.add_argument(
        "--demand-scale", type=float, default=1.0, help="speed-up of the trace's arrival rate"
    )
    group.add_argument(
        "--rides-per-second",
        type=float,
        default=0.0,
        help="target arrival rate (overrides the scale)",
    )
    group.add_argument(
        "--driver-share", type=float, default=0.8, help="share of users that are drivers"
    )
    group.add_argument(
        "--drivers", type=int, default=0, help="exact number of drivers (with --riders)"
    )
    group.add_argument(
        "--riders", type=int, default=0, help="exact number of riders (with --drivers)"
    )
    group.add_argument(
        "--location-interval", type=float, default=4.0, help="seconds between positions"
    )
    group.add_argument("--accept-probability", type=float, default=0.9)
    group.add_argument(
        "--offer-delay", type=float, default=1.0, help="mean seconds before answering an offer"
    )
    group.add_argument("--cancel-probability", type=float, default=0.05)
    group.add_argument(
        "--time-scale", type=float, default=0.05, help="ride time compression (0.05: 10 min → 30 s)"
    )
    group.add_argument(
        "--ride-timeout", type=float, default=300.0, help="how long a rider follows one ride"
    )
    group.add_argument("--summary-file", default="", help="write the Markdown summary here")
    group.add_argument(
        "--hosts", default="", help="comma-separated API URLs to spread users over (else --host)"
    )
    thresholds.add_arguments(parser)


@listener(events.init)
def _init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, MasterRunner):
        return
    Shared.options = options
    credentials = Path(options.credentials)
    if not credentials.is_file():
        raise SystemExit(
            f"no credentials at {credentials}: run `coop-dispatch seed --riders R --drivers D`"
        )
    Shared.load_credentials(credentials)
    Shared.feed = DemandFeed(
        Path(options.trips),
        skip_minutes=options.trips_skip_minutes,
        window_minutes=options.trips_window_minutes,
        demand_scale=options.demand_scale,
        rides_per_second=options.rides_per_second,
    )
    if options.drivers or options.riders:
        DriverUser.fixed_count, RiderUser.fixed_count = options.drivers, options.riders
    else:
        share = min(max(options.driver_share, 0.0), 1.0)
        DriverUser.weight = max(1, round(share * 100))
        RiderUser.weight = max(1, 100 - DriverUser.weight)


@listener(events.test_start)
def _start(environment: Environment, **_: Any) -> None:
    if Shared.feed is not None:
        Shared.feed.start()


@listener(events.test_stop)
def _stop(environment: Environment, **_: Any) -> None:
    if Shared.options is not None and environment.host:
        report.reconcile(environment.host, kpi.ledger)


@listener(events.quitting)
def _quitting(environment: Environment, **_: Any) -> None:
    if Shared.options is None:
        return
    _stop(environment)  # a SIGTERM quits without a test_stop
    summary = kpi.ledger.summary()
    checks = thresholds.evaluate(environment, summary)
    broken = [check for check in checks if not check.passed]
    environment.process_exit_code = 1 if broken else 0
    if Shared.options.summary_file:
        report.write_summary(
            Path(Shared.options.summary_file),
            environment,
            summary,
            checks,
            Shared.feed,
            Shared.started,
        )
    for check in checks:
        log.info(
            "threshold %-22s %s %g → %.4g %s",
            check.name,
            "≥" if check.at_least else "≤",
            check.limit,
            check.value,
            "pass" if check.passed else "FAIL",
        )
    if broken:
        log.error("thresholds broken: %s", ", ".join(check.name for check in broken))
