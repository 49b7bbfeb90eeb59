"""Parsing a client's WebSocket frame: what is JSON, and how deep it may nest."""

from __future__ import annotations

import pytest

from dispatch.realtime.connection import MAX_JSON_DEPTH, NestedTooDeep, loads


def nested(depth: int) -> str:
    """A value `depth` levels deep inside the message object (which is level 1)."""
    return '{"type": "location", "id": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"


def test_nesting_up_to_the_limit_parses() -> None:
    assert loads(nested(MAX_JSON_DEPTH))["type"] == "location"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 1100, 5000])
def test_nesting_past_the_limit_is_refused_at_any_depth(depth: int) -> None:
    with pytest.raises(NestedTooDeep):
        loads(nested(depth))


def test_brackets_inside_strings_do_not_count() -> None:
    raw = '{"type": "location", "id": "%s"}' % ("[{" * 100)
    assert loads(raw)["id"] == "[{" * 100


def test_the_standard_library_fallback_is_bounded_too() -> None:
    # NaN sends the frame to json.loads; the depth bound applies there as well.
    raw = '{"type": "location", "lat": NaN, "id": ' + "[" * 100 + "]" * 100 + "}"
    with pytest.raises(NestedTooDeep):
        loads(raw)


def test_what_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        loads("{not json")
