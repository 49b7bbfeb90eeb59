"""Idle WebSocket capacity: N authenticated driver sockets held open by one API process.

    python -m loadtests.idle_sockets --connections 10000 --hold-seconds 60

Starts one API process on the load-test database, seeds N drivers, opens their sockets (each
waits for `hello` and the `status` message, so it is authenticated and subscribed), holds them
while answering heartbeats, and reports the API process's resident memory before and after, per
connection, how many sockets are still open at the end (from the server's own
`coop_websocket_connections` gauge) and how many the server closed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from loadtests.ingest import rss_bytes, start_servers
from loadtests.run import RESULTS, load_database_env, metrics_headers, seeded_driver_tokens


def gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return float("nan")


async def hold(
    url: str,
    tokens: list[str],
    parallel: int,
    hold_s: float,
    api: str,
    pid: int,
    headers: dict[str, str],
) -> dict[str, Any]:
    import websockets

    opened: list[Any] = []
    closed_by_server = 0
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(parallel)

    async def keep(ws: Any) -> None:
        nonlocal closed_by_server
        try:
            async for raw in ws:
                if '"ping"' in raw and json.loads(raw).get("type") == "ping":
                    await ws.send('{"type":"pong"}')
        except websockets.ConnectionClosed:
            pass
        closed_by_server += 1

    async def connect(token: str) -> None:
        async with gate:
            try:
                ws = await websockets.connect(
                    f"{url}/v1/driver/ws",
                    additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=60,
                    max_queue=16,
                )
                await asyncio.wait_for(ws.recv(), 60)  # hello
                await asyncio.wait_for(ws.recv(), 60)  # status: authenticated, subscribed
            except Exception as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                return
            opened.append(ws)
            readers.append(asyncio.create_task(keep(ws)))  # answer heartbeats from the start

    readers: list[asyncio.Task[None]] = []
    started = time.monotonic()
    await asyncio.gather(*(connect(token) for token in tokens))
    connect_s = time.monotonic() - started
    await asyncio.sleep(3)
    rss_connected = rss_bytes(pid)
    await asyncio.sleep(hold_s)
    rss_held = rss_bytes(pid)
    async with httpx.AsyncClient(headers=headers) as client:
        metrics = (await client.get(f"{api}/metrics", timeout=30)).text
    server_open = gauge(metrics, "coop_websocket_connections")
    closed_during_hold = closed_by_server
    for ws in opened:
        with contextlib.suppress(Exception):
            await ws.close()
    for task in readers:
        task.cancel()
    return {
        "opened": len(opened),
        "failures": failures,
        "connect_s": round(connect_s, 1),
        "rss_connected": rss_connected,
        "rss_after_hold": rss_held,
        "server_open_at_end": server_open,
        "closed_by_server_during_hold": closed_during_hold,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=100, help="handshakes in flight")
    parser.add_argument("--hold-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or RESULTS / f"idle-sockets-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)

    env = load_database_env(dict(os.environ))
    tokens = seeded_driver_tokens(env, out, args.connections)
    [(server, api)] = start_servers("coop", 1, env, out)
    try:
        # Warm the route before the baseline.
        httpx.get(f"{api}/metrics", headers=metrics_headers(env), timeout=10)
        time.sleep(1)
        rss_idle = rss_bytes(server.pid)
        result = asyncio.run(
            hold(
                api.replace("http://", "ws://"),
                tokens,
                args.parallel,
                args.hold_seconds,
                api,
                server.pid,
                metrics_headers(env),
            )
        )
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=15)
    result["rss_before"] = rss_idle
    result["bytes_per_connection"] = round(
        (result["rss_after_hold"] - rss_idle) / max(result["opened"], 1)
    )
    result["hold_s"] = args.hold_seconds
    text = json.dumps(result, indent=1)
    print(text)
    (out / "idle-sockets.json").write_text(text + "\n")
    return 0 if result["opened"] == args.connections else 1


if __name__ == "__main__":
    sys.exit(main())
