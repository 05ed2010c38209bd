"""create_run (bulk, validated) and the set queries the executor relies on."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.runs import (
    StepSpec,
    create_run,
    descendants,
    find_run,
    state_counts,
)
from migrator.errors import ConfigError, NotFoundError, PlanError
from migrator.store.models import Step, StepDependency

Factory = sessionmaker[Session]


def ids_by_key(factory: Factory, run_id: int) -> dict[str, int]:
    with factory() as s:
        return {k: i for k, i in s.execute(select(Step.key, Step.id).where(Step.run_id == run_id))}


def test_create_run_inserts_steps_and_dependencies(any_factory: Factory) -> None:
    steps = [StepSpec("net", "network", {"cidr": "10.0.0.0/24"}, tenant="physics")]
    steps += [StepSpec("sub", "subnet"), StepSpec("rtr", "router")]
    run_id = create_run(any_factory, "wave-1", steps, [("sub", "net"), ("rtr", "sub")])
    assert find_run(any_factory, "wave-1").id == run_id
    assert find_run(any_factory, run_id).name == "wave-1"
    with any_factory() as s:
        net = s.execute(select(Step).where(Step.key == "net")).scalar_one()
        n_deps = s.execute(select(func.count()).select_from(StepDependency)).scalar_one()
    assert (net.state, net.version, net.spec, net.tenant) == (
        "pending",
        1,
        {"cidr": "10.0.0.0/24"},
        "physics",
    )
    assert n_deps == 2
    assert state_counts(any_factory, run_id) == {"pending": 3}


@pytest.mark.parametrize(
    ("steps", "deps", "message"),
    [
        (["a", "a"], [], "step key 'a' appears twice"),
        (["a"], [("a", "b")], "names unknown step 'b'"),
        (["a"], [("a", "a")], "step 'a' depends on itself"),
        (["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")], "cycle through a, b, c"),
    ],
)
def test_create_run_refuses_bad_graphs(
    factory: Factory, steps: list[str], deps: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        create_run(factory, "bad", [StepSpec(k, "x") for k in steps], deps)
    with pytest.raises(NotFoundError):
        find_run(factory, "bad")


def test_run_names_are_unique(factory: Factory) -> None:
    create_run(factory, "r", [StepSpec("a", "x")], [])
    with pytest.raises(ConfigError, match="a run named 'r' already exists"):
        create_run(factory, "r", [StepSpec("a", "x")], [])


def test_bulk_create_is_fast(factory: Factory) -> None:
    steps = [StepSpec(f"s{i}", "x", {"i": i}) for i in range(20_000)]
    deps = [(f"s{i}", f"s{i // 2}") for i in range(1, 20_000)]
    # CPU seconds of this process, not wall-clock ones: a busy machine makes the work wait
    # for a core, it does not make it more work. (The figures: benchmarks/.)
    began = time.process_time()
    run_id = create_run(factory, "big", steps[:300], deps[:299])
    assert time.process_time() - began < 1.0
    began = time.process_time()
    create_run(factory, "bigger", steps, deps)
    # 200,000 steps scale linearly from here: this bound keeps that within a minute.
    assert time.process_time() - began < 5.0
    assert state_counts(factory, run_id) == {"pending": 300}


def test_descendants_are_transitive_and_exact(any_factory: Factory) -> None:
    keys = ["a", "b", "c", "d", "e", "f", "g"]
    deps = [("b", "a"), ("c", "b"), ("d", "a"), ("e", "c"), ("e", "f"), ("g", "f")]
    run_id = create_run(any_factory, "r", [StepSpec(k, "x") for k in keys], deps)
    ids = ids_by_key(any_factory, run_id)
    name = {v: k for k, v in ids.items()}
    assert {name[i] for i in descendants(any_factory, ids["b"])} == {"c", "e"}
    assert {name[i] for i in descendants(any_factory, ids["a"])} == {"b", "c", "d", "e"}
    assert descendants(any_factory, ids["g"]) == set()
