"""`make loadtest`: seed, (start a local stack,) run Locust headless, keep every report.

    python -m loadtests.run --users 500 --duration 5m [--host http://api:8000] [--scale 1.5]

Without `--host` it starts its own stack on this machine: a dedicated `<database>_load` database
next to `COOP_DATABASE_URL` and Redis database 2, migrated and seeded, with one API process and
one dispatcher. With `--host` it seeds the database `COOP_DATABASE_URL` points at (the one the
target stack uses) and runs against that host. Everything lands in
`loadtests/results/<UTC timestamp>/`: Locust's HTML report and CSVs, `summary.md`, the Locust
log, the server logs of a local stack and a `/metrics` scrape of each process at the end.
The exit code is Locust's, which the thresholds set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    output = log.open("wb") if log else None
    return subprocess.Popen(
        [sys.executable, "-m", "dispatch.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
    )


def load_database_env(base: dict[str, str]) -> dict[str, str]:
    """The local stack's own database and Redis db, so a load test never touches dev data."""
    env = dict(base)
    server, name = env.get(
        "COOP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/coop_dispatch"
    ).rsplit("/", 1)
    env["COOP_DATABASE_URL"] = f"{server}/{name}_load"
    env["COOP_REDIS_URL"] = (
        env.get("COOP_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/2"
    )
    # Every simulated phone comes from this one address: its per-address budgets would refuse
    # them; the per-rider ones stay as shipped.
    env.setdefault("COOP_QUOTES_PER_ADDRESS_PER_MINUTE", "1000000")
    env.setdefault("COOP_REGISTER_PER_ADDRESS_PER_HOUR", "1000000")
    # `/metrics` answers only to a token; the local stack gets one of its own.
    env.setdefault("COOP_METRICS_TOKEN", secrets.token_hex(16))
    return env


def metrics_headers(env: dict[str, str]) -> dict[str, str]:
    token = env.get("COOP_METRICS_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def create_database(url: str) -> None:
    import asyncio

    import asyncpg

    server, name = url.rsplit("/", 1)

    async def create() -> None:
        admin = await asyncpg.connect(f"{server}/postgres")
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(create())


def seeded_driver_tokens(env: dict[str, str], out: Path, count: int) -> list[str]:
    """The load database created and migrated, `count` drivers seeded: their access tokens."""
    create_database(env["COOP_DATABASE_URL"])
    subprocess.run([sys.executable, "-m", "dispatch.cli", "migrate"], cwd=ROOT, env=env, check=True)
    credentials = out / "credentials.json"
    subprocess.run(
        [sys.executable, "-m", "dispatch.cli", "seed", "--riders", "0",
         "--drivers", str(count), "--credentials", str(credentials)],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    tokens = [str(d["token"]) for d in json.loads(credentials.read_text())["drivers"]]
    credentials.unlink()
    return tokens


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"API process exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"API at {url} did not become ready; see {log}")


@contextlib.contextmanager
def local_stack(
    env: dict[str, str], out: Path, apis: int
) -> Iterator[tuple[str, list[str], dict[str, int]]]:
    """API processes and a dispatcher here; yields the API URLs (comma-separated), every
    metrics URL and the process ids."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        metrics_port = free_port()
        dispatcher_env = env | {"COOP_DISPATCHER_METRICS_PORT": str(metrics_port)}
        urls = []
        for i in range(apis):
            port = free_port()
            log = out / f"api-{i}.log"
            process = cli("api", "--port", str(port), "--log-level", "warning", env=env, log=log)
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            wait_ready(urls[-1], process, log)
        processes.append(cli("dispatcher", env=dispatcher_env, log=out / "dispatcher.log"))
        metrics = [f"{url}/metrics" for url in urls] + [f"http://127.0.0.1:{metrics_port}/metrics"]
        names = [f"api-{i}" for i in range(apis)] + ["dispatcher"]
        yield (
            ",".join(urls),
            metrics,
            {name: p.pid for name, p in zip(names, processes, strict=True)},
        )
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


class ResourceSampler(threading.Thread):
    """RSS and CPU of each server process every `interval` s, to see memory growth over a run."""

    def __init__(self, pids: dict[str, int], path: Path, interval: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.path, self.interval = pids, path, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        with self.path.open("w") as samples:
            samples.write("seconds,process,rss_mb,cpu_seconds\n")
            while not self.stopped.wait(self.interval):
                at = time.monotonic() - started
                for name, pid in list(self.pids.items()):
                    with contextlib.suppress(OSError):
                        rss_mb, cpu = process_usage(pid)
                        samples.write(f"{at:.0f},{name},{rss_mb:.1f},{cpu:.1f}\n")
                samples.flush()


def process_usage(pid: int) -> tuple[float, float]:
    """Resident memory (MiB) and CPU seconds used so far, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss_kb / 1024, (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def scrape(metrics: list[str], out: Path, headers: dict[str, str]) -> None:
    for i, url in enumerate(metrics):
        with contextlib.suppress(httpx.HTTPError):
            scraped = httpx.get(url, headers=headers, timeout=5).text
            (out / f"metrics-{i}.txt").write_text(scraped)


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    if duration[-1] in units:
        return float(duration[:-1]) * units[duration[-1]]
    return float(duration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", default="2m", help="Locust run time: 90s, 5m, 1h")
    parser.add_argument("--host", default="", help="a running stack; empty: start one here")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="speed-up of the trace's arrival rate"
    )
    parser.add_argument("--rides-per-second", type=float, default=0.0, help="overrides --scale")
    parser.add_argument("--spawn-rate", type=float, default=20.0, help="users started per second")
    parser.add_argument("--apis", type=int, default=1, help="API processes of a local stack")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("locust_args", nargs="*", help="more Locust options, after --")
    args = parser.parse_args(argv)

    out = args.out or RESULTS / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not args.host:
        env = load_database_env(env)
        # Rides run compressed in time (`--time-scale`), so simulated cars move many times faster
        # than the API's plausibility check allows real ones (70 m/s).
        env.setdefault("COOP_LOCATION_MAX_SPEED_MPS", "5000")
        create_database(env["COOP_DATABASE_URL"])
        subprocess.run(
            [sys.executable, "-m", "dispatch.cli", "migrate"], cwd=ROOT, env=env, check=True
        )
    credentials = out / "credentials.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dispatch.cli",
            "seed",
            "--riders",
            str(args.users),
            "--drivers",
            str(args.users),
            "--credentials",
            str(credentials),
            "--token-ttl",
            str(int(seconds(args.duration)) + 3600),
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    with contextlib.ExitStack() as stack:
        metrics: list[str] = []
        sampler: ResourceSampler | None = None
        host = args.host
        if not host:
            hosts, metrics, pids = stack.enter_context(local_stack(env, out, args.apis))
            host = hosts.split(",")[0]
            args.locust_args = ["--hosts", hosts, *args.locust_args]
            sampler = ResourceSampler(pids, out / "server-resources.csv")
            sampler.start()
            stack.callback(sampler.stopped.set)
        else:
            metrics = [f"{host.rstrip('/')}/metrics"]
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtests" / "locustfile.py"),
            "--headless",
            "--host",
            host,
            "-u",
            str(args.users),
            "-r",
            str(args.spawn_rate),
            "-t",
            args.duration,
            "--stop-timeout",
            "10",
            "--only-summary",
            "--credentials",
            str(credentials),
            "--demand-scale",
            str(args.scale),
            "--rides-per-second",
            str(args.rides_per_second),
            "--html",
            str(out / "report.html"),
            "--csv",
            str(out / "locust"),
            "--summary-file",
            str(out / "summary.md"),
            "--logfile",
            str(out / "locust.log"),
            *args.locust_args,
        ]
        (out / "command.txt").write_text(shlex.join(command) + "\n")
        print(f"==> {shlex.join(command)}", flush=True)
        locust = subprocess.Popen(command, cwd=ROOT, env=env)
        if sampler is not None:
            sampler.pids["locust"] = locust.pid  # Locust shares the machine: watch it too
        code = locust.wait()
        scrape(metrics, out, metrics_headers(env))
    credentials.unlink(missing_ok=True)  # tokens: not worth keeping next to reports
    summary = out / "summary.md"
    if summary.is_file():
        print(summary.read_text())
    print(f"==> results in {out} (exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
