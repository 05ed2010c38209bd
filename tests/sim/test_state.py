"""GenerationMemo: what listings share is kept while the state is unchanged, and only then."""

from __future__ import annotations

from migrator.sim.state import GenerationMemo, SimState


def test_a_value_is_kept_until_the_state_changes() -> None:
    state = SimState(None)
    memo: GenerationMemo[list[str]] = GenerationMemo(state, 4)
    memo.put("volumes", ["v1"])
    assert memo.get("volumes") == ["v1"]
    state.put("volumes", {"id": "v2"})  # any change makes every kept value stale
    assert memo.get("volumes") is None
    memo.put("volumes", ["v1", "v2"])
    assert memo.get("volumes") == ["v1", "v2"]


def test_the_least_recently_used_key_is_dropped() -> None:
    memo: GenerationMemo[int] = GenerationMemo(SimState(None), 2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "b" is now the least recently used
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (1, None, 3)
