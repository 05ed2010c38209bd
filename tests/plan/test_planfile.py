"""Plan files: round trip, the fast reader and the YAML reader agree, and every way a file can
be wrong is a one-line PlanError naming the file, the step and the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.errors import PlanChangedError, PlanError
from migrator.operations.plan import make_plan
from migrator.plan.model import plan_hash
from migrator.plan.planfile import _NotFast, fast_load, read_plan, write_plan


@pytest.fixture
def plan_path(snapshot_url: str, config_file: Path, tmp_path: Path) -> Path:
    return make_plan(snapshot_url, config=config_file, tenants=["physics", "chemistry"],
                     offline=True, output=tmp_path / "plans" / "wave-1.yaml").path


def test_round_trip_and_readers_agree(plan_path: Path, snapshot_url: str,
                                      config_file: Path) -> None:
    text = plan_path.read_text()
    assert text.startswith("# migrator plan") and "\nsteps:\n- key: " in text
    assert fast_load(text) == yaml.safe_load(text)
    plan = read_plan(plan_path)
    assert plan.name == "wave-1" and len(plan.steps) == 41
    assert plan.compute_hash() == plan.content_hash
    # Reformatted by a YAML tool (same content): still the same plan.
    reformatted = plan_path.with_name("reformatted.yaml")
    reformatted.write_text(yaml.safe_dump(yaml.safe_load(text), sort_keys=False))
    assert read_plan(reformatted).content_hash == plan.content_hash


def resigned(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The plan changed and its hash recomputed: a consistent, but wrong, plan."""
    data = yaml.safe_load(path.read_text())
    change(data)
    header = {k: v for k, v in data.items() if k not in ("steps", "content_hash")}
    data["content_hash"] = plan_hash(header, data["steps"])
    out = path.with_name("changed.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def test_tampered_malformed_and_inconsistent_plans(plan_path: Path) -> None:
    text = plan_path.read_text()
    bad = plan_path.with_name("bad.yaml")
    bad.write_text(text.replace('"physics department"', '"physics dept"'))
    with pytest.raises(PlanError, match=r"bad.yaml: content hash mismatch: the file changed "
                                        r"after planning"):
        read_plan(bad)
    bad.write_text(text.replace("steps:\n", "steps: [\n", 1))
    with pytest.raises(PlanError, match=r"bad.yaml:\d+: not valid YAML: "):
        read_plan(bad)
    with pytest.raises(PlanError, match="no such plan file"):
        read_plan(plan_path.with_name("missing.yaml"))

    def drop_source_cloud(d: dict[str, Any]) -> None:
        del d["source"]["cloud"]

    with pytest.raises(PlanError, match=r"changed.yaml: source.cloud: missing$"):
        read_plan(resigned(plan_path, drop_source_cloud))

    def unknown_kind(d: dict[str, Any]) -> None:
        d["steps"][0]["kind"] = "instance"

    with pytest.raises(PlanError, match=r"changed.yaml: steps\[0\] \(project:\w+\): kind: "
                                        r"unknown step kind 'instance'"):
        read_plan(resigned(plan_path, unknown_kind))

    def unknown_dependency(d: dict[str, Any]) -> None:
        d["steps"][3]["depends_on"].append("network:nope")

    with pytest.raises(PlanError, match=r"steps\[3\] \(.*\): depends_on: unknown step "
                                        r"'network:nope'"):
        read_plan(resigned(plan_path, unknown_dependency))

    def cycle(d: dict[str, Any]) -> None:
        d["steps"][0]["depends_on"].append(d["steps"][1]["key"])

    with pytest.raises(PlanError, match=r"changed.yaml: the dependencies form a cycle: "
                                        r"(\S+) -> (?!\1)\S+ -> \1$"):
        read_plan(resigned(plan_path, cycle))

    def depends_on_itself(d: dict[str, Any]) -> None:
        d["steps"][5]["depends_on"].append(d["steps"][5]["key"])

    with pytest.raises(PlanError, match=r"the dependencies form a cycle: (\S+) -> \1$"):
        read_plan(resigned(plan_path, depends_on_itself))

    def missing_field(d: dict[str, Any]) -> None:
        del d["steps"][2]["spec"]

    with pytest.raises(PlanError, match=r"steps\[2\] \(.*\): spec: missing"):
        read_plan(resigned(plan_path, missing_field))

    def wrong_format(d: dict[str, Any]) -> None:
        d["format"] = 2

    with pytest.raises(PlanError, match="format: unsupported plan format 2"):
        read_plan(resigned(plan_path, wrong_format))


def test_edited_plan_is_a_plan_changed_error(plan_path: Path) -> None:
    bad = plan_path.with_name("edited.yaml")
    bad.write_text(plan_path.read_text().replace('"physics department"', '"physics dept"'))
    with pytest.raises(PlanChangedError):
        read_plan(bad)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def test_deep_values_in_the_fast_layout(plan_path: Path) -> None:
    """A value nested past half the depth limit leaves the fast reader for the YAML one, which
    reads it when the whole document stays within MAX_DEPTH and names its line otherwise."""
    plan = read_plan(plan_path)
    plan.steps[0].spec["attrs"]["deep"] = nested(40)
    fine = write_plan(plan, plan_path.with_name("deep-40.yaml"))
    text = fine.read_text()
    with pytest.raises(_NotFast):
        fast_load(text)
    assert read_plan(fine).steps[0].spec["attrs"]["deep"] == nested(40)
    plan.steps[0].spec["attrs"]["deep"] = nested(300)  # beyond orjson's 255 for encoding
    deep = write_plan(plan, plan_path.with_name("deep-300.yaml"))
    line = deep.read_text().splitlines().index(next(
        s for s in deep.read_text().splitlines() if "bottom" in s)) + 1
    with pytest.raises(PlanError, match=rf"deep-300.yaml:{line}: nested deeper than 64 "
                                        r"levels$"):
        read_plan(deep)
