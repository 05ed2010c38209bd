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
from collections.abc import Callable, Hashable, Iterable, Iterator
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


Keys = Callable[[Record], Iterable[Hashable]]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def field_keys(field: str) -> Keys:
    """A record's key in an index of ``field``: its value (one that cannot be a dict key, a
    list say, is under no key: such values are never looked up)."""
    def keys(record: Record) -> tuple[Hashable, ...]:
        value = record.get(field)
        return (value,) if _hashable(value) else ()
    return keys


def element_keys(field: str) -> Keys:
    """A record's keys in an index of the list ``field`` (its tags): each element."""
    def keys(record: Record) -> tuple[Hashable, ...]:
        value = record.get(field)
        if not isinstance(value, list | tuple):
            return ()
        return tuple(dict.fromkeys(v for v in value if _hashable(v)))
    return keys


class RecordIndex:
    """The records of one collection by a key computed from each (a field's value, each of
    its tags): key -> {id: record}, and each id's keys, so that a record whose key changed is
    moved, not left under its old key. ``removals`` counts keys given up (a record deleted, a
    key dropped), for caches that stay valid only while nothing is released (see IPAM)."""

    def __init__(self, keys: Keys) -> None:
        self.keys_of = keys
        self.buckets: dict[Hashable, dict[str, Record]] = {}
        self.held: dict[str, tuple[Hashable, ...]] = {}
        self.removals = 0

    def build(self, records: Iterable[Record]) -> None:
        self.buckets.clear()
        self.held.clear()
        for record in records:
            self.add(record)

    def add(self, record: Record) -> None:
        """Index ``record`` (again: after it changed in place or was replaced)."""
        rid = record["id"]
        keys = tuple(self.keys_of(record))
        old = self.held.get(rid)
        if old is not None:
            for key in old:
                if key not in keys:
                    self._drop(key, rid)
        for key in keys:
            self.buckets.setdefault(key, {})[rid] = record
        self.held[rid] = keys

    def remove(self, rid: str) -> None:
        for key in self.held.pop(rid, ()):
            self._drop(key, rid)

    def _drop(self, key: Hashable, rid: str) -> None:
        bucket = self.buckets.get(key)
        if bucket is not None:
            bucket.pop(rid, None)
            if not bucket:
                del self.buckets[key]
        self.removals += 1


class SimState:
    """Collections of records keyed by id, with optional persistence under a folder.

    Lookups by field (an owner, a name, a tag) are answered from indexes derived from the
    collections: built on first use, kept by :meth:`put`, :meth:`delete` and :meth:`touch`
    (a record changed in place), dropped when the state is loaded. A change announced only by
    a bare :meth:`mark_dirty` (a record changed in place, which one unknown) drops every index
    of a field that may change (see :meth:`lookup`); those are built again when next used.
    The collections stay the only truth: an index is never saved, and one that disagrees with
    its collection's size is built again."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.data: dict[str, dict[str, Record]] = {name: {} for name in COLLECTIONS}
        self.dirty = False
        # Monotonic time of the first change not yet saved (None when saved): the saver
        # bounds how long a change may wait for a save (see migrator.sim.server.SavePolicy).
        self.dirty_since: float | None = None
        self._generation = 0
        self._groups: dict[tuple[str, str], tuple[int, dict[Any, list[Record]]]] = {}
        # collection -> {index name: (index, stable)}; a stable index is of a field a record
        # keeps for its life (its owner, a rule's group) and survives a bare mark_dirty.
        self._indexes: dict[str, dict[str, tuple[RecordIndex, bool]]] = {}
        # collection -> {id: position}: the order of the collection (its dict's insertion
        # order), so that an index's answer comes in the order a scan gives.
        self._order: dict[str, dict[str, int]] = {}
        self._next_position = 0
        # (collection, index name) -> the removals count a new build of that index starts
        # from: a count never goes back when an index is dropped and built again.
        self._epochs: dict[tuple[str, str], int] = {}

    # -- collections -----------------------------------------------------------------------
    def coll(self, name: str) -> dict[str, Record]:
        return self.data[name]

    def get(self, name: str, rid: str) -> Record | None:
        return self.data[name].get(rid)

    def put(self, name: str, record: Record) -> Record:
        rid = record["id"]
        coll = self.data[name]
        if rid not in coll:
            order = self._order.get(name)
            if order is not None:
                order[rid] = self._next_position
                self._next_position += 1
        coll[rid] = record
        for index, _stable in self._indexes.get(name, {}).values():
            index.add(record)
        self._changed()
        return record

    def touch(self, name: str, record: Record) -> None:
        """``record`` of ``name`` changed in place: indexed again, and the change saved."""
        if self.data[name].get(record["id"]) is record:
            for index, _stable in self._indexes.get(name, {}).values():
                index.add(record)
        self._changed()

    def touch_record(self, record: Record) -> None:
        """Like :meth:`touch` when the caller does not name the collection: found by the
        record's identity (ids are unique across collections)."""
        for name in COLLECTIONS:
            if self.data[name].get(record.get("id")) is record:  # type: ignore[arg-type]
                self.touch(name, record)
                return
        self._changed()  # not stored: no index holds it

    def delete(self, name: str, rid: str) -> Record | None:
        rec = self.data[name].pop(rid, None)
        if rec is not None:
            for index, _stable in self._indexes.get(name, {}).values():
                index.remove(rid)
            order = self._order.get(name)
            if order is not None:
                order.pop(rid, None)
        self._changed()
        return rec

    def values(self, name: str) -> Iterator[Record]:
        return iter(list(self.data[name].values()))

    # -- indexed lookups ---------------------------------------------------------------------
    def index(self, name: str, index_name: str, keys: Keys, *, stable: bool = False
              ) -> RecordIndex:
        """The index ``index_name`` of collection ``name`` (built now if it is not there or
        has lost step with the collection)."""
        entry = self._indexes.setdefault(name, {}).get(index_name)
        coll = self.data[name]
        if entry is None or len(entry[0].held) != len(coll):
            if entry is not None:
                self._retire(name, index_name, entry[0])
            index = RecordIndex(keys)
            index.build(coll.values())
            index.removals = self._epochs.get((name, index_name), 0)
            entry = self._indexes[name][index_name] = (index, stable)
        return entry[0]

    def _retire(self, name: str, index_name: str, index: RecordIndex) -> None:
        self._epochs[(name, index_name)] = index.removals + 1

    def _indexed(self, name: str, index_name: str, keys: Keys, stable: bool, key: Hashable
                 ) -> list[Record]:
        coll = self.data[name]
        index = self.index(name, index_name, keys, stable=stable)
        found = list(index.buckets.get(key, {}).values())
        if any(coll.get(r["id"]) is not r or key not in keys(r) for r in found):
            # Changed behind put and touch: built again from the collection.
            self._retire(name, index_name, self._indexes[name].pop(index_name)[0])
            index = self.index(name, index_name, keys, stable=stable)
            found = list(index.buckets.get(key, {}).values())
        if len(found) > 1:
            position = self._positions(name)
            found.sort(key=lambda r: position[r["id"]])
        return found

    def positions(self, name: str) -> dict[str, int]:
        """Each record's position in collection ``name`` (a sort key in its order)."""
        return self._positions(name)

    def _positions(self, name: str) -> dict[str, int]:
        order = self._order.get(name)
        if order is None or len(order) != len(self.data[name]):
            order = {}
            for rid in self.data[name]:
                order[rid] = self._next_position
                self._next_position += 1
            self._order[name] = order
        return order

    def where(self, name: str, field: str, value: Any) -> list[Record]:
        """The records of ``name`` whose ``field`` is ``value``, in the collection's order,
        without scanning the collection. Only for fields a record never changes in place (an
        owner, a rule's group): the index survives a bare mark_dirty."""
        if not _hashable(value):
            return [r for r in self.data[name].values() if r.get(field) == value]
        return self._indexed(name, f"={field}", field_keys(field), True, value)

    def lookup(self, name: str, field: str, value: Any) -> list[Record]:
        """Like :meth:`where` for any field, one that changes in place too (a name, a
        device): exact as long as in-place changes are announced by :meth:`touch` (or a bare
        :meth:`mark_dirty`, which drops the index)."""
        if not _hashable(value):
            return [r for r in self.data[name].values() if r.get(field) == value]
        return self._indexed(name, f"~{field}", field_keys(field), False, value)

    def field_index(self, name: str, field: str) -> RecordIndex:
        """The index :meth:`lookup` answers from (its ``removals`` tell a cache whether a
        value was given up since)."""
        return self.index(name, f"~{field}", field_keys(field))

    def tagged(self, name: str, tag: str, field: str = "tags") -> list[Record]:
        """The records of ``name`` whose list ``field`` holds ``tag``, in collection order."""
        return self._indexed(name, f"#{field}", element_keys(field), False, tag)

    def keyed(self, name: str, index_name: str, keys: Keys, key: Hashable, *,
              stable: bool = False) -> list[Record]:
        """The records of ``name`` under ``key`` in the index ``index_name`` of ``keys``
        (a key derived from a record, an address of a port say), in collection order.
        ``stable``: the keys of a record never change in place (derived from its id)."""
        return self._indexed(name, index_name, keys, stable, key)

    # Fields a record keeps for its life: find() answers from their (stable) index first.
    STABLE_FIELDS = ("user_id", "project_id", "role_id", "image_id", "member_id",
                     "security_group_id", "network_id", "volume_id", "subnet_id",
                     "router_id", "domain_id")

    def find(self, coll: str, **match: Any) -> list[Record]:
        candidates = self._candidates(coll, match)
        return [r for r in candidates if all(r.get(k) == v for k, v in match.items())]

    def find_one(self, coll: str, **match: Any) -> Record | None:
        for r in self._candidates(coll, match):
            if all(r.get(k) == v for k, v in match.items()):
                return r
        return None

    def _candidates(self, coll: str, match: dict[str, Any]) -> Iterable[Record]:
        """The records a find may answer: those under a matched name (a lookup by name is
        the commonest and the most selective), else under a matched stable field, else
        under any other matched field (a port's device), else all."""
        value = match.get("name")
        if value is not None and _hashable(value):
            return self.lookup(coll, "name", value)
        for field in self.STABLE_FIELDS:
            value = match.get(field)
            if value is not None and _hashable(value):
                return self.where(coll, field, value)
        for field, value in match.items():
            if value is not None and _hashable(value):
                return self.lookup(coll, field, value)
        return self.data[coll].values()

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
        """Something changed in place (which record: unknown): saved later, and the indexes
        of fields that may change are dropped (prefer :meth:`touch`, which keeps them)."""
        for name, indexes in self._indexes.items():
            for index_name in [n for n, (_, stable) in indexes.items() if not stable]:
                self._retire(name, index_name, indexes.pop(index_name)[0])
        self._changed()

    def _changed(self) -> None:
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
        for name, indexes in self._indexes.items():
            for index_name, (index, _stable) in indexes.items():
                self._retire(name, index_name, index)
        self._indexes.clear()
        self._order.clear()
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
