"""The shared NYC data sets: they sit in `../shared/data` beside the repository, not in it."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
TAXI_FILE = "nyc_yellow_taxi_2013-01-01_debs2015_sample.csv"
UBER_FILE = "nyc_uber_pickups_2014-04-01_to_04-12_B02512_B02598.csv"
ROAD_GRAPH_DIR = "manhattan_road_graph"
