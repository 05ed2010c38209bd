from __future__ import annotations

import gc

from migrator.bulk_gc import BULK_THRESHOLDS, relaxed_gc


def test_thresholds_are_relaxed_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    with relaxed_gc():
        assert gc.get_threshold() == BULK_THRESHOLDS
        with relaxed_gc():
            assert gc.get_threshold() == BULK_THRESHOLDS
        assert gc.get_threshold() == BULK_THRESHOLDS
    assert gc.get_threshold() == before


def test_thresholds_are_restored_when_the_block_fails() -> None:
    before = gc.get_threshold()
    try:
        with relaxed_gc():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before


def test_cycles_are_still_collected() -> None:
    class Node:
        other: object = None

    with relaxed_gc():
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2
