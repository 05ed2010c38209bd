"""jsoncodec gives the standard library's text for what OpenStack returns, and falls back to it
where orjson refuses a value."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from migrator import jsoncodec

VALUES = [
    {"b": 1, "a": [1, "é", None, True, False], "c": {"z": 0.5, "y": -3, "x": ""}},
    {"name": "réseau \u2028 </script>", "tags": [], "nested": {"deep": [{"k": 1.25}]}},
    [1e16, 123456789.125, -0.0, 2**63 - 1, -(2**63)],
    "plain", 7, None, [],
]


@pytest.mark.parametrize("value", VALUES)
def test_canonical_is_the_standard_librarys_text(value: object) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert jsoncodec.canonical(value) == expected
    assert jsoncodec.canonical_bytes(value) == expected.encode()


@pytest.mark.parametrize("value", VALUES)
def test_compact_keeps_insertion_order(value: object) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert jsoncodec.compact(value) == expected


@pytest.mark.parametrize("value", VALUES)
def test_loads_round_trips_text_and_bytes(value: object) -> None:
    text = json.dumps(value)
    assert jsoncodec.loads(text) == value
    assert jsoncodec.loads(text.encode()) == value


def test_what_orjson_refuses_goes_through_the_standard_library() -> None:
    big = {"size": 2**70, "b": 1}
    assert jsoncodec.canonical(big) == json.dumps(big, sort_keys=True, separators=(",", ":"))
    keyed = {3: "non-string key", "a": [2**70]}
    assert jsoncodec.compact(keyed) == json.dumps(keyed, separators=(",", ":"))
    assert jsoncodec.loads('{"n": 1180591620717411303424, "x": NaN}')["n"] == 2**70


@dataclass
class Point:
    x: int


def test_unknown_types_are_written_as_str_like_the_standard_library() -> None:
    when = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
    value = {"at": when, "point": Point(1)}
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    assert jsoncodec.canonical(value) == expected
    assert jsoncodec.compact(value) == json.dumps(value, separators=(",", ":"), default=str)


def test_invalid_json_raises_value_error() -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads('{"unterminated": ')
