"""The loaded state of a serving-only simulator process is frozen out of the garbage
collector's passes; a simulator inside another program leaves the collector alone."""

from __future__ import annotations

import gc
from pathlib import Path

from migrator.sim.server import CloudSpec, SimServer


def _in_collector(obj: object) -> bool:
    return any(o is obj for generation in range(3) for o in gc.get_objects(generation))


def test_loaded_state_is_not_walked_by_collections(tmp_path: Path) -> None:
    try:
        srv = SimServer([CloudSpec("legacy", "liberty")], tmp_path, freeze_loaded_state=True)
        records = srv.cloud("legacy").state.data["domains"]  # a dict of dicts: GC-tracked
        assert gc.is_tracked(records)
        assert not _in_collector(records)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the rest of the test session's objects go back to the collector


def test_an_embedded_simulator_leaves_the_collector_alone(tmp_path: Path) -> None:
    frozen = gc.get_freeze_count()
    srv = SimServer([CloudSpec("legacy", "liberty")], tmp_path)
    records = srv.cloud("legacy").state.data["domains"]
    assert gc.is_tracked(records)
    assert _in_collector(records)
    assert gc.get_freeze_count() == frozen
