"""Read every driver of a Redis GEO key in one round trip, and write a batch's offers in one.

A GEO key is a sorted set whose scores are 52-bit geohashes, so `ZRANGE key 0 -1 WITHSCORES`
returns the whole fleet at once; the positions are decoded here with array arithmetic instead of a
`GEOPOS` or `GEOSEARCH` per driver or per request.

redis-py's pure-Python reply parser needs about 0.6 s for a 50,000-member reply on our 2-core
machine (hiredis would remove that), so `BulkRedisConnection` speaks RESP itself for these two
bulk commands: one send, one read, and the reply split with `bytes.split`.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import redis
import redis.asyncio as aioredis

from dispatch.matching.batch import Assignment
from dispatch.matching.eta import FloatArray

# Redis encodes positions on a 26-bit-per-axis grid over these ranges (src/geohash.h).
_GEO_STEP = 26
_LAT_MIN, _LAT_MAX = -85.05112878, 85.05112878
_LNG_MIN, _LNG_MAX = -180.0, 180.0


def drivers_geo_key(region: str) -> str:
    return f"coop:{{{region}}}:drivers:geo"


def offer_key(region: str, ride_id: str) -> str:
    return f"coop:{{{region}}}:offer:{ride_id}"


def _squash_alternate_bits(interleaved: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Keep bits 0, 2, 4, ... and pack them together (the inverse of a Morton interleave)."""
    x = interleaved & np.uint64(0x5555555555555555)
    for shift, mask in (
        (1, 0x3333333333333333),
        (2, 0x0F0F0F0F0F0F0F0F),
        (4, 0x00FF00FF00FF00FF),
        (8, 0x0000FFFF0000FFFF),
        (16, 0x00000000FFFFFFFF),
    ):
        x = (x | (x >> np.uint64(shift))) & np.uint64(mask)
    return x


def decode_geohash_scores(scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(lat, lng) of each GEO member score, the centre of its cell as `GEOPOS` reports it."""
    bits = np.asarray(scores, dtype=np.float64).astype(np.uint64)
    cells = float(1 << _GEO_STEP)
    lat_cell = _squash_alternate_bits(bits).astype(np.float64)
    lng_cell = _squash_alternate_bits(bits >> np.uint64(1)).astype(np.float64)
    lat = _LAT_MIN + (lat_cell + 0.5) / cells * (_LAT_MAX - _LAT_MIN)
    lng = _LNG_MIN + (lng_cell + 0.5) / cells * (_LNG_MAX - _LNG_MIN)
    return np.clip(lat, _LAT_MIN, _LAT_MAX), np.clip(lng, _LNG_MIN, _LNG_MAX)


def _decode_members(rows: Sequence[Any]) -> tuple[list[str], FloatArray, FloatArray]:
    ids = [m.decode() if isinstance(m, bytes) else m for m, _ in rows]
    lat, lng = decode_geohash_scores(np.fromiter((s for _, s in rows), np.float64, len(rows)))
    return ids, lat, lng


def read_drivers(client: redis.Redis, key: str) -> tuple[list[str], FloatArray, FloatArray]:
    """Every member of a GEO key with its position, in one round trip."""
    return _decode_members(client.zrange(key, 0, -1, withscores=True))


async def read_drivers_async(
    client: aioredis.Redis, key: str
) -> tuple[list[str], FloatArray, FloatArray]:
    return _decode_members(await client.zrange(key, 0, -1, withscores=True))


def write_offers(
    client: redis.Redis, region: str, assignments: Sequence[Assignment], ttl_s: int
) -> None:
    """One pipelined round trip: `SET coop:{region}:offer:<ride_id> <driver_id>:<eta_s> EX ttl`."""
    pipe = client.pipeline(transaction=False)
    for a in assignments:
        pipe.set(offer_key(region, a.ride_id), f"{a.driver_id}:{a.eta_s}", ex=ttl_s)
    pipe.execute()


class RedisReplyError(RuntimeError):
    """Redis answered a bulk command with an error, or with a reply we cannot read."""


def _resp_command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class BulkRedisConnection:
    """A plain socket to Redis for the dispatcher's two bulk commands per batch.

    Member ids must not contain CR LF (ours are UUIDs); a reply that does not split into the
    expected shape raises `RedisReplyError`.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 6379, db: int = 0, timeout_s: float = 30.0
    ) -> None:
        # A reply that never comes (wrong server, half-open link) raises instead of hanging.
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if db:
            self._sock.sendall(_resp_command(b"SELECT", str(db).encode()))
            self._read_lines(1)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BulkRedisConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_lines(self, expected_lines: int, first: bytes = b"") -> bytes:
        """Read until the buffer holds `expected_lines` CR LF line ends."""
        buffer = bytearray(first)
        seen = buffer.count(b"\r\n")
        while seen < expected_lines:
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise RedisReplyError("connection closed mid-reply")
            # A CR LF may straddle the boundary between the buffer and the new chunk.
            seen += (buffer[-1:] + chunk).count(b"\r\n")
            buffer += chunk
            if buffer[:1] == b"-":
                raise RedisReplyError(bytes(buffer).split(b"\r\n", 1)[0].decode())
        return bytes(buffer)

    def read_drivers(self, key: str) -> tuple[list[str], FloatArray, FloatArray]:
        """Every member of a GEO key with its position: `ZRANGE key 0 -1 WITHSCORES`, decoded."""
        self._sock.sendall(_resp_command(b"ZRANGE", key.encode(), b"0", b"-1", b"WITHSCORES"))
        head = self._read_lines(1)
        if not head.startswith(b"*"):
            raise RedisReplyError(f"unexpected reply {head[:40]!r}")
        n_items = int(head[1 : head.index(b"\r\n")])
        reply = self._read_lines(1 + 2 * n_items, head)
        lines = reply.split(b"\r\n")
        if len(lines) != 2 + 2 * n_items:
            raise RedisReplyError("GEO reply did not split into members and scores")
        payload = lines[2 : 2 * n_items + 1 : 2]
        ids = [member.decode() for member in payload[0::2]]
        lat, lng = decode_geohash_scores(np.array(payload[1::2]).astype(np.float64))
        return ids, lat, lng

    def write_offers(self, region: str, assignments: Sequence[Assignment], ttl_s: int) -> None:
        """`SET coop:{region}:offer:<ride_id> <driver_id>:<eta_s> EX ttl` for each, pipelined."""
        if not assignments:
            return
        ttl = str(ttl_s).encode()
        self._sock.sendall(
            b"".join(
                _resp_command(
                    b"SET",
                    offer_key(region, a.ride_id).encode(),
                    f"{a.driver_id}:{a.eta_s}".encode(),
                    b"EX",
                    ttl,
                )
                for a in assignments
            )
        )
        replies = self._read_lines(len(assignments))
        if replies.count(b"+OK\r\n") != len(assignments):
            raise RedisReplyError(f"offer write-back failed: {replies[:80]!r}")
