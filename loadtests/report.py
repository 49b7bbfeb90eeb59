"""End of run: account for every ride, then a short Markdown summary next to Locust's reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from locust.env import Environment

from loadtests import kpi
from loadtests.thresholds import Check, protocol_error_rate

KPI_ROWS = (
    kpi.REQUEST_TO_OFFER,
    kpi.REQUEST_TO_MATCH,
    kpi.OFFER_ACCEPTED,
    kpi.RIDE_OUTCOME,
    kpi.LOCATION_ACCEPTED,
    kpi.WS_RECONNECT,
)


def reconcile(host: str, ledger: kpi.Ledger) -> None:
    """Asks the server about every ride its rider did not see end: still open, ended, or lost."""
    if ledger.reconciled_once:
        return
    ledger.reconciled_once = True
    session = requests.Session()
    for record in ledger.rides.values():
        if record.terminal_seen:
            ledger.reconciled["seen ending"] += 1
            continue
        try:
            response = session.get(
                f"{host}/v1/rider/rides/{record.ride_id}",
                headers={"Authorization": f"Bearer {record.rider_token}"},
                timeout=10,
            )
        except requests.RequestException:
            ledger.reconciled["unreachable"] += 1
            continue
        if response.status_code != 200:
            ledger.reconciled["lost"] += 1
            continue
        status = str(response.json().get("status"))
        ledger.status(record.ride_id, status, from_event=False)
        if status in kpi.TERMINAL:
            # Ended on the server after its rider stopped listening (the run was stopping).
            ledger.reconciled[f"{status} (seen by REST at the end)"] += 1
        else:
            ledger.reconciled[f"still {status} at the end"] += 1


def _row(environment: Environment, name: str, method: str = kpi.KPI) -> Any:
    return environment.stats.entries.get((name, method))


def _fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def write_summary(
    path: Path,
    environment: Environment,
    ledger: dict[str, Any],
    checks: list[Check],
    feed: Any,
    started: dict[str, int],
) -> str:
    options = environment.parsed_options
    if options is None:
        raise RuntimeError("the summary describes the run's parsed options")
    total = environment.stats.total
    duration = max((total.last_request_timestamp or 0) - (total.start_time or 0), 1e-9)
    lines = [
        "# Load test summary",
        "",
        f"- When: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; host {environment.host}",
        f"- Users started: {started['driver']} drivers, {started['rider']} riders; "
        f"run time {options.run_time or 'until stopped'} s",
        f"- Drivers: a position every {options.location_interval} s, accept probability "
        f"{options.accept_probability}; rides compressed × {options.time_scale}",
    ]
    if feed is not None:
        lines.append(
            f"- Demand: {Path(options.trips).name}, {len(feed.trips)} trips in "
            f"{feed.span_s / 60:.0f} min (trace {feed.trace_rate:.2f} rides/s) × "
            f"{feed.speedup:.2f} = target {feed.target_rate:.2f} rides/s; {feed.issued} taken, "
            f"{feed.dropped} dropped for want of a free rider"
        )
    lines += ["", "## Thresholds", "", "| check | limit | measured | result |", "|---|---|---|---|"]
    for check in checks:
        sign = "≥" if check.at_least else "≤"
        unit = f" {check.unit}" if check.unit else ""
        result = "pass" if check.passed else "**FAIL**"
        lines.append(
            f"| {check.name} | {sign} {check.limit:g}{unit} | {check.value:.4g}{unit} | {result} |"
        )
    lines += [
        "",
        "## Market KPIs",
        "",
        "| KPI | samples | p50 | p95 | p99 | rate/s | failure % |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in KPI_ROWS:
        row = _row(environment, name)
        if row is None or row.num_requests == 0:
            lines.append(f"| {name} | 0 | — | — | — | — | — |")
            continue
        p50, p95, p99 = (_fmt_ms(row.get_response_time_percentile(q)) for q in (0.5, 0.95, 0.99))
        rate = row.num_requests / duration
        lines.append(
            f"| {name} | {row.num_requests} | {p50} | {p95} | {p99} | {rate:.1f} "
            f"| {row.fail_ratio * 100:.1f} |"
        )
    failures, operations = protocol_error_rate(environment)
    lines += [
        "",
        f"- Offer acceptance rate: {ledger['acceptance_rate']:.1%} "
        f"({json.dumps(ledger['offers'])})",
        f"- Rides requested: {ledger['requested']}; final status: "
        f"{json.dumps(ledger['by_status'])}; unfulfilled share of ended rides: "
        f"{ledger['unfulfilled_share']:.1%}",
        f"- Accounting at the end: {json.dumps(ledger['reconciled'])}; lost: {ledger['lost']}",
        f"- Protocol operations (HTTP + WS): {operations}, failed {failures}; "
        f"5xx: {ledger['server_errors']}; ride requests refused: {ledger['request_failures']}",
        "",
        "Locust's HTML report and CSVs in this folder have every row; KPI rows have type `KPI`.",
        "",
    ]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
