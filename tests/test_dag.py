from __future__ import annotations

from migrator.dag import never_freed


def test_an_acyclic_graph_frees_every_node() -> None:
    assert never_freed(4, [(1, 0), (2, 1), (3, 1), (3, 2)]) == []
    assert never_freed(0, []) == []


def test_nodes_on_or_behind_a_cycle_are_never_freed() -> None:
    # 1 <-> 2 is a cycle, 3 depends on it, 0 and 4 are free.
    assert never_freed(5, [(1, 2), (2, 1), (3, 2), (4, 0)]) == [1, 2, 3]


def test_a_self_dependency_is_a_cycle() -> None:
    assert never_freed(2, [(1, 1)]) == [1]
