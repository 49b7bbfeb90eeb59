"""The bulk GEO snapshot (the dispatcher's) and the engine bench's offer write-back, on the
real Redis."""

import os

import numpy as np
import pytest
import redis

from dispatch.dispatcher.geo_snapshot import decode_geohash_scores
from dispatch.matching import Assignment
from dispatch.simulation.batch_cycle import (
    batch_offers_key,
    drivers_geo_key,
    read_drivers,
    write_offers,
)

REDIS_URL = os.environ.get("COOP_REDIS_URL", "redis://127.0.0.1:6379/1")
REGION = "test-geo-snapshot"


@pytest.fixture
def client():
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.delete(drivers_geo_key(REGION), batch_offers_key(REGION, "b1"))
    connection.close()


def test_snapshot_positions_equal_geopos(client):
    rng = np.random.default_rng(0)
    lat, lng = 40.6 + rng.random(500) * 0.3, -74.1 + rng.random(500) * 0.3
    key = drivers_geo_key(REGION)
    members = []
    for i, (a, o) in enumerate(zip(lat.tolist(), lng.tolist(), strict=True)):
        members += [o, a, f"driver-{i}"]
    client.geoadd(key, members)

    ids, snap_lat, snap_lng = read_drivers(client, key)
    assert sorted(ids) == sorted(f"driver-{i}" for i in range(500))
    expected = client.geopos(key, *ids)
    assert np.allclose(snap_lat, [p[1] for p in expected], atol=1e-9)
    assert np.allclose(snap_lng, [p[0] for p in expected], atol=1e-9)
    # Within the geohash cell (under a metre) of what was written.
    order = [int(i.split("-")[1]) for i in ids]
    assert np.abs(snap_lat - lat[order]).max() < 1e-5
    # The positions are exactly the members' scores, decoded.
    scores = dict(client.zrange(key, 0, -1, withscores=True))
    score_lat, score_lng = decode_geohash_scores(np.array([scores[i.encode()] for i in ids]))
    assert np.array_equal(snap_lat, score_lat) and np.array_equal(snap_lng, score_lng)


def test_offers_are_written_with_a_ttl(client):
    offers = [Assignment(f"ride-{i}", f"driver-{i}", 60 + i) for i in range(50)]
    write_offers(client, REGION, "b1", offers, ttl_s=30)
    key = batch_offers_key(REGION, "b1")
    assert client.hlen(key) == 50
    assert client.hget(key, "ride-7") == b"driver-7:67"
    assert 0 < client.ttl(key) <= 30


def test_decoding_an_empty_snapshot():
    lat, lng = decode_geohash_scores(np.zeros(0))
    assert len(lat) == len(lng) == 0
