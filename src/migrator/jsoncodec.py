"""JSON for the bulk paths: inventory snapshots, plan hashes, step specs, simulator bodies.

A 10,000-tenant inventory is about 270,000 records and its plan 250,000 steps; every one of
them is encoded or decoded several times between discovery and execution. orjson does that
five to ten times faster than the standard library, and for what OpenStack APIs return
(strings, 64-bit integers, booleans, null, lists, mappings with string keys) its output is
the same text the standard library writes with the same options. Where orjson refuses a value
(an integer beyond 64 bits, a mapping with non-string keys) the standard library encodes it.
Two differences remain, neither seen in OpenStack's JSON: floats below 1e-4 are written in
positional notation (``0.00001``, the standard library writes ``1e-05``) and a non-finite
float is written ``null``.

- :func:`canonical`: sorted keys, no whitespace, non-ASCII kept (hashes, stored text);
- :func:`compact`: insertion order, no whitespace, non-ASCII kept;
- :func:`loads`: str or bytes to Python values.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=str)
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
# datetimes and dataclasses go to ``default=str`` as they do in the standard library (orjson
# would write its own ISO format and the dataclass's fields).
_PASS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_SORTED = orjson.OPT_SORT_KEYS | _PASS


def canonical_bytes(value: Any) -> bytes:
    """UTF-8 canonical JSON: sorted keys, no whitespace, non-ASCII kept, unknown types as
    ``str()``."""
    try:
        out = orjson.dumps(value, option=_SORTED, default=str)
    except TypeError:  # orjson.JSONEncodeError: big int, non-string key...
        return _CANONICAL.encode(value).encode()
    return out


def canonical(value: Any) -> str:
    """:func:`canonical_bytes` as text."""
    return canonical_bytes(value).decode()


def compact(value: Any) -> str:
    """Compact JSON in insertion order, non-ASCII kept, unknown types as ``str()``."""
    try:
        out = orjson.dumps(value, option=_PASS, default=str)
    except TypeError:
        return _COMPACT.encode(value)
    return out.decode()


def loads(text: str | bytes) -> Any:
    """Parse JSON; what orjson refuses but the standard library accepts (``NaN``, integers
    beyond 64 bits) is parsed by the standard library. Invalid JSON raises ValueError."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
