"""The bulk GEO snapshot and offer write-back against the real Redis."""

import os

import numpy as np
import pytest
import redis

from dispatch.matching import Assignment
from dispatch.matching.geo_snapshot import (
    BulkRedisConnection,
    decode_geohash_scores,
    drivers_geo_key,
    offer_key,
    read_drivers,
)

REDIS_URL = os.environ.get("COOP_REDIS_URL", "redis://127.0.0.1:6379/1")
REGION = "test-geo-snapshot"


@pytest.fixture
def client():
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.delete(drivers_geo_key(REGION), *connection.keys(f"coop:{{{REGION}}}:offer:*"))
    connection.close()


def bulk_connection(client: redis.Redis) -> BulkRedisConnection:
    """The same server and database as the redis-py client the test writes through."""
    kwargs = client.connection_pool.connection_kwargs
    return BulkRedisConnection(host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0))


def test_snapshot_positions_equal_geopos(client):
    rng = np.random.default_rng(0)
    lat, lng = 40.6 + rng.random(500) * 0.3, -74.1 + rng.random(500) * 0.3
    key = drivers_geo_key(REGION)
    members = []
    for i, (a, o) in enumerate(zip(lat.tolist(), lng.tolist(), strict=True)):
        members += [o, a, f"driver-{i}"]
    client.geoadd(key, members)

    with bulk_connection(client) as bulk:
        ids, snap_lat, snap_lng = bulk.read_drivers(key)
    assert sorted(ids) == sorted(f"driver-{i}" for i in range(500))
    expected = client.geopos(key, *ids)
    assert np.allclose(snap_lat, [p[1] for p in expected], atol=1e-9)
    assert np.allclose(snap_lng, [p[0] for p in expected], atol=1e-9)
    # Within the geohash cell (under a metre) of what was written.
    order = [int(i.split("-")[1]) for i in ids]
    assert np.abs(snap_lat - lat[order]).max() < 1e-5
    # The redis-py path decodes the same.
    assert read_drivers(client, key)[0] == ids


def test_offers_are_written_with_a_ttl(client):
    offers = [Assignment(f"ride-{i}", f"driver-{i}", 60 + i) for i in range(50)]
    with bulk_connection(client) as bulk:
        bulk.write_offers(REGION, offers, ttl_s=30)
    assert client.get(offer_key(REGION, "ride-7")) == b"driver-7:67"
    assert 0 < client.ttl(offer_key(REGION, "ride-7")) <= 30


def test_decoding_an_empty_snapshot():
    lat, lng = decode_geohash_scores(np.zeros(0))
    assert len(lat) == len(lng) == 0
