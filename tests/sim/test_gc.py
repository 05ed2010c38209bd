"""The simulator's loaded state is frozen out of the garbage collector's passes."""

from __future__ import annotations

import gc
from pathlib import Path

from migrator.sim.server import CloudSpec, SimServer


def test_loaded_state_is_not_walked_by_collections(tmp_path: Path) -> None:
    srv = SimServer([CloudSpec("legacy", "liberty")], tmp_path)
    domain = srv.cloud("legacy").state.get("domains", "default")
    assert domain is not None
    collected = [o for generation in range(3) for o in gc.get_objects(generation)
                 if o is domain]
    assert collected == []
    assert gc.get_freeze_count() > 0
