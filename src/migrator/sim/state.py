"""The simulated cloud's state: plain dicts in named collections, saved to disk on change.

Resources are kept in one internal representation (close to the modern API's) and each service
renders them for the profile it serves. The server is single-threaded (one asyncio loop), so
handlers mutate the dicts directly; ``mark_dirty`` schedules a debounced save so that a
simulator restarted with the same ``--data-dir`` finds its clouds as they were.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from migrator import jsoncodec

T = TypeVar("T")

COLLECTIONS = (
    "domains",
    "projects",
    "users",
    "roles",
    "role_assignments",
    "images",
    "image_members",
    "volumes",
    "volume_types",
    "quotas",
    "flavors",
    "keypairs",
    "networks",
    "subnets",
    "subnetpools",
    "routers",
    "ports",
    "security_groups",
    "security_group_rules",
    "servers",
    "floatingips",
    "snapshots",
)

Record = dict[str, Any]


def new_id() -> str:
    return str(uuid.uuid4())


def new_hex_id() -> str:
    # Keystone ids are 32 hex characters without dashes.
    return uuid.uuid4().hex


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


class SimState:
    """Collections of records keyed by id, with optional persistence under a folder."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.data: dict[str, dict[str, Record]] = {name: {} for name in COLLECTIONS}
        self.dirty = False
        # Monotonic time of the first change not yet saved (None when saved): the saver
        # bounds how long a change may wait for a save (see migrator.sim.server.SavePolicy).
        self.dirty_since: float | None = None
        self._generation = 0
        self._groups: dict[tuple[str, str], tuple[int, dict[Any, list[Record]]]] = {}
        # (collection, field) -> (value -> {id: record}, records indexed): kept up to date by
        # put and delete, for fields a record keeps for its life (its owner, a rule's group).
        # See where().
        self._indexes: dict[tuple[str, str], tuple[dict[Any, dict[str, Record]], list[int]]] = {}

    # -- collections -----------------------------------------------------------------------
    def coll(self, name: str) -> dict[str, Record]:
        return self.data[name]

    def get(self, name: str, rid: str) -> Record | None:
        return self.data[name].get(rid)

    def put(self, name: str, record: Record) -> Record:
        old = self.data[name].get(record["id"])
        self.data[name][record["id"]] = record
        for (coll, field), (index, size) in self._indexes.items():
            if coll == name:
                if old is None:
                    size[0] += 1
                elif old.get(field) != record.get(field):
                    index.get(old.get(field), {}).pop(old["id"], None)
                index.setdefault(record.get(field), {})[record["id"]] = record
        self.mark_dirty()
        return record

    def where(self, name: str, field: str, value: Any) -> list[Record]:
        """The records of ``name`` whose ``field`` is ``value``, in insertion order, without
        scanning the collection: an index per (collection, field), built on first use and
        kept by put and delete, so that a call costs the same whatever the cloud holds.
        Only for fields a record never changes in place (an owner, a rule's group); a change
        made around put and delete (a collection replaced, a record swapped) is noticed and
        the index built again."""
        key = (name, field)
        coll = self.data[name]
        entry = self._indexes.get(key)
        if entry is None or entry[1][0] != len(coll):
            index: dict[Any, dict[str, Record]] = {}
            for record in coll.values():
                index.setdefault(record.get(field), {})[record["id"]] = record
            entry = self._indexes[key] = (index, [len(coll)])
        found = list(entry[0].get(value, {}).values())
        if any(coll.get(r["id"]) is not r or r.get(field) != value for r in found):
            del self._indexes[key]  # something changed behind put(): build it again
            return self.where(name, field, value)
        return found

    def delete(self, name: str, rid: str) -> Record | None:
        rec = self.data[name].pop(rid, None)
        if rec is not None:
            for (coll, field), (index, size) in self._indexes.items():
                if coll == name:
                    index.get(rec.get(field), {}).pop(rid, None)
                    size[0] -= 1
        self.mark_dirty()
        return rec

    def values(self, name: str) -> Iterator[Record]:
        return iter(list(self.data[name].values()))

    def find(self, coll: str, **match: Any) -> list[Record]:
        return [r for r in self.data[coll].values() if all(r.get(k) == v for k, v in match.items())]

    def find_one(self, coll: str, **match: Any) -> Record | None:
        for r in self.data[coll].values():
            if all(r.get(k) == v for k, v in match.items()):
                return r
        return None

    def grouped(self, coll: str, field: str) -> dict[Any, list[Record]]:
        """``coll``'s records grouped by ``field`` (in insertion order, as :meth:`find` returns
        them). Built in one pass and kept until the state changes: per-owner reads (keypairs
        of a user, members of an image) would otherwise scan the whole collection on every
        call, O(N^2) over a discovery of 10,000 tenants."""
        return self.grouped_by(coll, field, lambda r: r.get(field))

    def grouped_by(self, coll: str, name: str, key: Callable[[Record], Any]
                   ) -> dict[Any, list[Record]]:
        """Like :meth:`grouped` with the group key computed by ``key`` (cached as ``name``;
        the key of a record must not change while it is stored)."""
        cached = self._groups.get((coll, name))
        if cached is None or cached[0] != self._generation:
            groups: dict[Any, list[Record]] = {}
            for record in self.data[coll].values():
                groups.setdefault(key(record), []).append(record)
            cached = (self._generation, groups)
            self._groups[(coll, name)] = cached
        return cached[1]

    @property
    def generation(self) -> int:
        """Changes whenever any record changes: a key for caches derived from the state."""
        return self._generation

    # -- persistence -----------------------------------------------------------------------
    def mark_dirty(self) -> None:
        if not self.dirty:
            self.dirty_since = time.monotonic()
        self.dirty = True
        self._generation += 1

    def load(self) -> bool:
        """Load the saved state if there is one; True when something was loaded."""
        if self.path is None or not self.path.exists():
            return False
        saved = jsoncodec.loads(self.path.read_bytes())
        for name in COLLECTIONS:
            self.data[name] = saved.get(name, {})
        self._indexes.clear()
        self._generation += 1  # derived caches (grouped) were built from other records
        self.dirty = False
        self.dirty_since = None
        return True

    def save(self) -> None:
        """Write the state atomically (temp file then rename); a no-op without a path."""
        if self.path is None:
            self.dirty = False
            self.dirty_since = None
            return
        generation = self._generation
        tmp = self.path.with_suffix(".tmp")
        # Encoded in one piece with orjson (jsoncodec): the 300,000 records of a 10,000-tenant
        # cloud took ~3 s of the event loop with json.dumps, ~0.5 s this way.
        data = jsoncodec.compact(self.data).encode()
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        if generation == self._generation:
            self.dirty = False
            self.dirty_since = None


class GenerationMemo(Generic[T]):
    """Values derived from ``state`` (a listing's filtered, sorted records, say), kept while
    the state does not change: a value put under an older generation is never returned. At
    most ``size`` keys are kept, the least recently used dropped first. The pages of one
    listing share one value instead of each page deriving it again."""

    def __init__(self, state: SimState, size: int) -> None:
        self.state = state
        self.size = size
        self._values: OrderedDict[Hashable, tuple[int, T]] = OrderedDict()

    def get(self, key: Hashable) -> T | None:
        found = self._values.get(key)
        if found is None or found[0] != self.state.generation:
            return None
        self._values.move_to_end(key)
        return found[1]

    def put(self, key: Hashable, value: T) -> None:
        self._values[key] = (self.state.generation, value)
        self._values.move_to_end(key)
        while len(self._values) > self.size:
            self._values.popitem(last=False)
