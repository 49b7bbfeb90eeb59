"""Location ingestion benchmark: driver positions over WebSockets into the geo index, offered at
fixed rates (open loop), latency from send to `location.ack`.

    python -m loadtests.ingest --target coop --rates 2000,4000,8000 --connections 1000
    python -m loadtests.ingest --target bare ...          # the one-GEOADD-per-message baseline
    python -m loadtests.ingest --target bare-grouped ...  # the grouped-GEOADD baseline
    python -m loadtests.ingest --target coop --apis 2 --generators 2  # connections split

It starts the servers itself (on the load-test database, see `loadtests.run`), connects every
driver (token, `status online`), then offers each rate for `--step-seconds`, sending on a fixed
schedule whether or not acks came back, so a slow server shows up as latency, not as a lower
offered rate. Locust is not used here: on a 2-core machine its per-message cost would measure
Locust, not the server. Prints a Markdown table and writes JSON next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from loadtests.frames import CLOSE, PING, PONG, TEXT, client_frame, server_frames, upgrade_request
from loadtests.run import RESULTS, ROOT, free_port, load_database_env, seeded_driver_tokens

TICK_S = 0.002


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        raise RuntimeError("a process that has not started has no CPU time")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- generator process ------------------------------------------------------------------------
#
# The generator speaks the WebSocket protocol itself (loadtests/frames.py), over an asyncio
# Protocol on uvloop: it writes pre-framed text frames and parses the server's frames.


class Stats:
    def __init__(self) -> None:
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.acks = 0
        self.errors = 0


class RawSocket(asyncio.Protocol):
    """One driver socket: handshake, then frames in both directions."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.setup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.streaming = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(bytes(buffer[:end]).decode(errors="replace"))
            del buffer[: end + 4]
            self.upgraded = True
        now = time.perf_counter()
        for opcode, payload in server_frames(buffer):
            if opcode == TEXT:
                self.text_received(payload, now)
            elif opcode == PING:  # protocol ping: answer, or the server closes the socket
                self.send(client_frame(payload, PONG))
            elif opcode == CLOSE:
                assert self.transport is not None
                self.transport.close()
                return

    def text_received(self, payload: bytes, now: float) -> None:
        message = json.loads(payload)
        kind = message.get("type")
        stats = self.stats
        if kind == "location.ack":
            started = stats.sent_at.pop(message["id"], None)
            if started is not None:
                stats.latencies.append(now - started)
                stats.acks += 1
        elif kind == "ping":
            self.send(PONG_MESSAGE)
        elif kind == "error":
            stats.errors += 1
        elif not self.streaming:
            self.setup.put_nowait(message)


PONG_MESSAGE = client_frame(b'{"type":"pong"}')
ONLINE = client_frame(b'{"type":"status","status":"online"}')


async def open_socket(url: str, path: str, token: str, stats: Stats) -> RawSocket:
    host_port = url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    transport, socket = await loop.create_connection(lambda: RawSocket(stats), host, int(port))
    socket.transport = transport  # uvloop may call connection_made later
    socket.send(upgrade_request(host_port, path, token))
    return socket


async def _generator(
    urls: list[str],
    tokens: list[str],
    target: str,
    steps: list[float],
    step_s: float,
    warmup_s: float,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    stats = Stats()
    sent_at, latencies = stats.sent_at, stats.latencies

    async def connect(i: int, token: str) -> RawSocket:
        url = urls[i % len(urls)]
        if target == "coop":
            socket = await open_socket(url, "/v1/driver/ws", token, stats)
            await asyncio.wait_for(socket.setup.get(), 30)  # hello
            await asyncio.wait_for(socket.setup.get(), 30)  # status
            socket.send(ONLINE)
            await asyncio.wait_for(socket.setup.get(), 30)  # status online
        else:
            socket = await open_socket(url, f"/ws?{i}-{os.getpid()}", "", stats)
            await asyncio.wait_for(socket.setup.get(), 30)  # hello
        socket.streaming = True
        return socket

    # A few handshakes at a time: each costs the API two short transactions.
    gate = asyncio.Semaphore(16)

    async def connect_gated(i: int, token: str) -> RawSocket:
        async with gate:
            return await connect(i, token)

    sockets = list(await asyncio.gather(*(connect_gated(i, t) for i, t in enumerate(tokens))))
    ready.set()
    go.wait()  # the parent starts every generator at once
    next_id = 0
    lat, lng = 40.75, -73.98
    for rate in steps:
        started = time.perf_counter()
        sent = 0
        measuring = False
        acks_at_start = 0
        while True:
            now = time.perf_counter()
            elapsed = now - started
            if not measuring and elapsed >= warmup_s:
                measuring, acks_at_start = True, stats.acks
                latencies.clear()
                window_start = now
            if elapsed >= warmup_s + step_s:
                break
            due = int(elapsed * rate) - sent
            for _ in range(due):
                socket = sockets[next_id % len(sockets)]
                next_id += 1
                # Each socket keeps its place: the API refuses drivers that jump around.
                payload = b'{"type":"location","lat":%.5f,"lng":%.5f,"id":%d}' % (
                    lat + (next_id % len(sockets) % 97) * 1e-4,
                    lng,
                    next_id,
                )
                sent_at[next_id] = time.perf_counter()
                socket.send(client_frame(payload))
            sent += max(due, 0)
            await asyncio.sleep(TICK_S)
        window = time.perf_counter() - window_start
        acked = stats.acks - acks_at_start
        pending = len(sent_at)
        results.put({
            "rate": rate, "acked": acked, "window": window, "errors": stats.errors,
            "acks_cumulative": stats.acks,
            "pending": pending, "latencies": np.array(latencies, dtype=np.float64).tobytes(),
        })  # fmt: skip
        # Let the backlog drain before the next step, so steps do not bleed into each other.
        deadline = time.perf_counter() + 10
        while sent_at and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        sent_at.clear()
    for socket in sockets:
        socket.send(client_frame(b"\x03\xe8", CLOSE))  # close 1000
    await asyncio.sleep(0.2)
    for socket in sockets:
        if socket.transport is not None:
            socket.transport.close()


def generator_main(*args: Any) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_generator(*args))


# --- servers ----------------------------------------------------------------------------------


def start_servers(
    target: str, apis: int, env: dict[str, str], out: Path
) -> list[tuple[subprocess.Popen[bytes], str]]:
    servers = []
    for i in range(apis):
        port = free_port()
        log = (out / f"{target}-api-{i}.log").open("wb")
        if target == "coop":
            command = [
                sys.executable,
                "-m",
                "dispatch.cli",
                "api",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
        else:
            command = [
                sys.executable, "-m", "uvicorn", "loadtests.bare_geoadd:app", "--port", str(port),
                "--ws", "websockets-sansio", "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip
        server_env = env | {"BARE_GROUPED": "1"} if target == "bare-grouped" else env
        process = subprocess.Popen(
            command, cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT
        )
        servers.append((process, f"http://127.0.0.1:{port}"))
    for process, url in servers:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{target} server at {url} did not start")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{url}/healthz", timeout=1)
                break
            time.sleep(0.2)
    return servers


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q) * 1000) if len(values) else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=("coop", "bare", "bare-grouped"), default="coop")
    parser.add_argument(
        "--apis", type=int, default=1, help="server processes; connections are split"
    )
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--generators", type=int, default=1, help="load generator processes")
    parser.add_argument(
        "--rates", default="2000,4000,6000,8000,10000,12000", help="offered msgs/s, all servers"
    )
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    steps = [float(r) for r in args.rates.split(",")]
    out = args.out or RESULTS / f"ingest-{args.target}-{args.apis}-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)

    env = load_database_env(dict(os.environ))
    # One driver streams far faster here than the per-socket flood limit allows a real one.
    env["COOP_WS_MESSAGES_PER_SECOND"] = "100000"
    tokens: list[str] = []
    if args.target == "coop":
        tokens = seeded_driver_tokens(env, out, args.connections)
    else:
        tokens = [""] * args.connections

    servers = start_servers(args.target, args.apis, env, out)
    urls = [url.replace("http://", "ws://") for _, url in servers]
    context = multiprocessing.get_context("spawn")
    ready = [context.Event() for _ in range(args.generators)]
    go = context.Event()
    results = context.Queue()
    share = [tokens[i :: args.generators] for i in range(args.generators)]
    per_generator = [r / args.generators for r in steps]
    generators = [
        context.Process(
            target=generator_main,
            args=(
                urls,
                share[g],
                args.target,
                per_generator,
                args.step_seconds,
                args.warmup_seconds,
                ready[g],
                go,
                results,
            ),
        )
        for g in range(args.generators)
    ]
    rows: list[dict[str, Any]] = []
    try:
        for process in generators:
            process.start()
        deadline = time.monotonic() + 600
        for event, process in zip(ready, generators, strict=True):
            while not event.wait(timeout=1):
                if not process.is_alive() or time.monotonic() > deadline:
                    raise SystemExit("a generator failed or did not connect in time")
        rss_before = [rss_bytes(p.pid) for p, _ in servers]
        go.set()
        gen_start = [cpu_seconds(g.pid) for g in generators]
        cpu_start = [cpu_seconds(p.pid) for p, _ in servers]
        wall_start = time.monotonic()
        acks_before = 0
        for rate in steps:
            load_start = os.getloadavg()[0]
            parts = [
                results.get(timeout=args.step_seconds + args.warmup_seconds + 120)
                for _ in generators
            ]
            cpu_now = [cpu_seconds(p.pid) for p, _ in servers]
            wall = time.monotonic() - wall_start
            cpu_used = [now - before for now, before in zip(cpu_now, cpu_start, strict=True)]
            cpu = [used / wall for used in cpu_used]
            acks_total = sum(p["acks_cumulative"] for p in parts)
            acks_in_step, acks_before = acks_total - acks_before, acks_total
            cpu_start, wall_start = cpu_now, time.monotonic()
            latencies = np.concatenate(
                [np.frombuffer(p["latencies"], dtype=np.float64) for p in parts]
            )
            acked = sum(p["acked"] for p in parts)
            window = max(p["window"] for p in parts)
            row = {
                "offered_per_s": rate,
                "acked_per_s": round(acked / window),
                "p50_ms": round(percentile(latencies, 50), 2),
                "p99_ms": round(percentile(latencies, 99), 2),
                "p999_ms": round(percentile(latencies, 99.9), 2),
                "max_ms": round(
                    float(latencies.max() * 1000) if len(latencies) else float("nan"), 1
                ),
                "errors": sum(p["errors"] for p in parts),
                "unacked_at_end": sum(p["pending"] for p in parts),
                "server_cpu": [round(c, 2) for c in cpu],
                # CPU per acknowledged update: a capacity figure other load on the box barely moves.
                "server_cpu_us_per_ack": round(sum(cpu_used) / max(acks_in_step, 1) * 1e6, 1),
                # Other work on the machine competes for the same 2 cores: keep it on record.
                "load_avg_1m": round(max(load_start, os.getloadavg()[0]), 2),
            }
            row["generator_cpu"] = [
                round((cpu_seconds(g.pid) - gen_start[i]) / wall, 2)
                for i, g in enumerate(generators)
            ]
            gen_start = [cpu_seconds(g.pid) for g in generators]
            rows.append(row)
            print(json.dumps(row), flush=True)
            if row["acked_per_s"] < 0.7 * rate:
                print("saturated: higher rates would only pile up a backlog", flush=True)
                break
        rss_after = [rss_bytes(p.pid) for p, _ in servers]
    finally:
        for process in generators:
            if process.is_alive():
                process.terminate()
        for server, _ in servers:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=15)
    columns = (
        "offered/s", "acked/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "server CPU (cores)",
        "CPU µs/ack", "generator CPU", "load avg", "errors",
    )  # fmt: skip
    table = [
        f"target={args.target} apis={args.apis} connections={args.connections} "
        f"generators={args.generators} step={args.step_seconds}s warmup={args.warmup_seconds}s; "
        f"server RSS {rss_before} → {rss_after} bytes",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = (
            f"{row['offered_per_s']:,.0f}", f"{row['acked_per_s']:,}", row["p50_ms"], row["p99_ms"],
            row["p999_ms"], row["max_ms"], " + ".join(map(str, row["server_cpu"])),
            row["server_cpu_us_per_ack"], " + ".join(map(str, row["generator_cpu"])),
            row["load_avg_1m"], row["errors"],
        )  # fmt: skip
        table.append("| " + " | ".join(map(str, cells)) + " |")
    text = "\n".join(table)
    print(text)
    (out / "ingest.md").write_text(text + "\n")
    (out / "ingest.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(out)}, "rows": rows}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
