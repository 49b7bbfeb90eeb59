"""A minute of the real load test, so it cannot rot: seeded accounts, real API and dispatcher
processes, Locust headless with drivers and riders over the real protocol."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import METRICS_HEADERS, bearer
from tests.e2e.harness import ROOT, TIMES_SQUARE, WALL_STREET, Stack, free_port, running_stack

pytestmark = pytest.mark.e2e

LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"


def locust(host: str, credentials: Path, out: Path, run_time: str, *extra: str) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
        "-u", "20", "-r", "20", "-t", run_time, "--stop-timeout", "3", "--only-summary",
        "--drivers", "12", "--riders", "8", "--credentials", str(credentials),
        "--rides-per-second", "1.5", "--time-scale", "0.01", "--offer-delay", "0.3",
        "--accept-probability", "0.8", "--location-interval", "1",
        "--csv", str(out / "locust"), "--html", str(out / "report.html"),
        "--summary-file", str(out / "summary.md"), "--logfile", str(out / "locust.log"),
        *extra,
    ]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, timeout=120).returncode


def kpi_rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "locust_stats.csv").open() as stats:
        return {row["Name"]: row for row in csv.DictReader(stats) if row["Type"] == "KPI"}


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    with running_stack(
        tmp_path, dispatcher_metrics_port=str(free_port()), location_max_speed_mps="5000"
    ) as running:
        yield running


def seed(stack: Stack, credentials: Path) -> str:
    seeded = subprocess.run(
        [sys.executable, "-m", "dispatch.cli", "seed", "--riders", "8", "--drivers", "12",
         "--credentials", str(credentials)],
        cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    return seeded.stdout


def test_locust_drives_rides_and_thresholds_set_the_exit_code(stack: Stack, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    seed(stack, credentials)
    api = stack.start_api("api").url
    assert api
    stack.start_dispatcher("dispatcher")

    passing = tmp_path / "passing"
    code = locust(
        api, credentials, passing, "20s",
        "--min-rides", "5", "--max-error-rate", "0.05", "--max-unfulfilled-share", "0.5",
        "--max-request-to-offer-p99-ms", "30000",
    )  # fmt: skip
    summary = (passing / "summary.md").read_text()
    assert code == 0, summary

    rows = kpi_rows(passing)
    for name in ("request→offer", "request→match", "offer accepted", "location accepted"):
        assert int(rows[name]["Request Count"]) > 0, (name, summary)
    assert int(rows["ride outcome"]["Request Count"]) > 0, summary  # some rides ended
    assert float(rows["location accepted"]["Requests/s"]) > 1
    assert "| lost rides | ≤ 0 | 0 | pass |" in summary
    assert "completed" in summary and (passing / "report.html").stat().st_size > 10_000

    assert httpx.get(f"{api}/metrics").status_code == 401  # not without the token
    api_metrics = httpx.get(f"{api}/metrics", headers=METRICS_HEADERS).text
    assert "coop_location_updates_received_total" in api_metrics
    assert 'coop_offers{region="nyc",status="accepted"}' in api_metrics
    dispatcher_port = stack.env["COOP_DISPATCHER_METRICS_PORT"]
    dispatcher_url = f"http://127.0.0.1:{dispatcher_port}/metrics"
    assert httpx.get(dispatcher_url).status_code == 401
    dispatcher_metrics = httpx.get(dispatcher_url, headers=METRICS_HEADERS).text
    sent = [
        float(line.split()[-1]) for line in dispatcher_metrics.splitlines()
        if line.startswith('coop_dispatch_offers_sent_total{region="nyc"}')
    ]  # fmt: skip
    assert sent and sent[0] > 0

    failing = tmp_path / "failing"
    code = locust(api, credentials, failing, "6s", "--min-rides", "1000", "--max-error-rate", "1")
    assert code == 1
    assert "| rides requested | ≥ 1000 |" in (failing / "summary.md").read_text()
    assert "**FAIL**" in (failing / "summary.md").read_text()


def test_seeding_again_cancels_rides_an_earlier_run_left_open(stack: Stack, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    seed(stack, credentials)
    api = stack.start_api("api").url
    assert api
    rider = json.loads(credentials.read_text())["riders"][0]
    headers = bearer(rider["token"])
    quote = httpx.post(
        f"{api}/v1/rider/quotes", json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
        headers=headers,
    )  # fmt: skip
    assert quote.status_code == 201, quote.text
    body = {"quote_id": quote.json()["id"]}
    ride = httpx.post(f"{api}/v1/rider/rides", json=body, headers=headers)
    assert ride.status_code == 201, ride.text

    assert "1 rides an earlier run left open were closed" in seed(stack, credentials)
    after = httpx.get(f"{api}/v1/rider/rides/{ride.json()['id']}", headers=headers).json()
    assert after["status"] == "cancelled"
    quote = httpx.post(
        f"{api}/v1/rider/quotes", json={"pickup": TIMES_SQUARE, "dropoff": WALL_STREET},
        headers=headers,
    )  # fmt: skip
    again = httpx.post(
        f"{api}/v1/rider/rides", json={"quote_id": quote.json()["id"]}, headers=headers
    )
    assert again.status_code == 201, again.text  # not 409 ride_already_open
