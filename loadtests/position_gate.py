"""What checking a position costs before it is indexed (service area, speed), in isolation.

    python -m loadtests.position_gate [--checks 200000] [--drivers 10000]

The demo co-op's area; each driver crawls a few centimetres between its positions, so every check
passes all three tests (the common case).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from dispatch.dispatcher.plausibility import PositionGate
from dispatch.fares.areas import ServiceAreaCache, ServiceAreas

NYC = {
    "type": "MultiPolygon",
    "coordinates": [
        [
            [
                [-74.2591, 40.4774],
                [-73.7004, 40.4774],
                [-73.7004, 40.9176],
                [-74.2591, 40.9176],
                [-74.2591, 40.4774],
            ]
        ]
    ],
}


async def measure(checks: int, drivers: int) -> float:
    async def load() -> ServiceAreas:
        return ServiceAreas([json.dumps(NYC)])

    areas = ServiceAreaCache(load, reload_after_s=3600)
    await areas.reload()
    gate = PositionGate(areas, max_speed_mps=70, jitter_m=100)
    members = [f"driver-{i}" for i in range(drivers)]
    started = time.perf_counter()
    for i in range(checks):
        await gate.check(members[i % drivers], 40.75 + (i % 97) * 1e-6, -73.98)
    elapsed = time.perf_counter() - started
    assert not gate.refused, gate.refused
    return elapsed / checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--drivers", type=int, default=10_000)
    args = parser.parse_args()
    per_check = asyncio.run(measure(args.checks, args.drivers))
    print(f"{args.checks} checks over {args.drivers} drivers: {per_check * 1e6:.1f} µs each")


if __name__ == "__main__":
    main()
