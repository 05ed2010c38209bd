"""Which kinds a plan holds (plan/kinds.py): what a kind needs, exclusions, what the target's
catalog lacks; and the planner honouring the selection on the synthetic inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.config import load_config
from migrator.errors import ConfigError, PlanError
from migrator.operations.plan import make_plan
from migrator.plan.kinds import parse_kinds, select_kinds, service_problems
from migrator.plan.model import KINDS
from tests.plan.conftest import write_config

NETWORK_KINDS = ["network", "subnet", "router", "router_interface", "security_group",
                 "security_group_rule"]


def test_every_kind_by_default() -> None:
    chosen = select_kinds((), ())
    assert chosen.kinds == frozenset(KINDS) and not chosen.left_out and not chosen.added


def test_a_selected_kind_brings_what_it_needs() -> None:
    chosen = select_kinds(["image_member", "volume"], ())
    assert sorted(chosen.kinds) == ["image", "image_member", "project", "volume"]
    assert chosen.added == ("project", "image")
    assert chosen.as_dict()["kinds"] == ["project", "image", "image_member", "volume"]


def test_an_excluded_kind_takes_what_needs_it() -> None:
    chosen = select_kinds((), ["network", "keypair"])
    assert not chosen.kinds & {"network", "subnet", "router_interface", "keypair"}
    assert {"router", "security_group", "image"} <= chosen.kinds
    assert chosen.left_out["subnet"] == "needs network (excluded)"
    assert chosen.left_out["network"] == "excluded"


def test_selected_and_excluded_conflicts_are_refused() -> None:
    with pytest.raises(PlanError, match="kind subnet is selected but needs network, which is "
                                        "excluded"):
        select_kinds(["subnet"], ["network"])
    with pytest.raises(PlanError, match="kind image is both selected and excluded"):
        select_kinds(["image"], ["image"])


def test_missing_services_leave_out_unasked_kinds() -> None:
    chosen = select_kinds((), (), {"identity", "image", "volume"})
    assert chosen.kinds == {"project", "quota", "user", "role_assignment", "image",
                            "image_member", "volume"}
    assert chosen.left_out["keypair"] == "no compute service"
    assert chosen.left_out["router_interface"] == "no network service"
    assert chosen.quota_wanted("volume") and not chosen.quota_wanted("compute")
    assert not chosen.quota_wanted("network")
    warnings = chosen.warnings()
    assert warnings == [
        "the target has no compute service in its catalog: kind(s) keypair, server not "
        "planned",
        "the target has no network service in its catalog: kind(s) "
        f"{', '.join(NETWORK_KINDS)} not planned",
        "the target has no compute or network service in its catalog: compute, network "
        "quotas not planned"]


def test_missing_service_refuses_asked_kinds_in_one_line() -> None:
    with pytest.raises(PlanError) as info:
        select_kinds(["project", "network"], (), {"identity", "image"}, cloud="kg")
    assert str(info.value) == ("the target cloud kg has no network service in its catalog, "
                               "which kind(s) network need; leave them out (--exclude-kinds "
                               "network)")
    # A volume's bytes go through the target's Glance: no image service, no volume.
    with pytest.raises(PlanError, match="no image service in its catalog, which kind"):
        select_kinds(["volume"], (), {"identity", "volume"})


def test_parse_kinds_accepts_commas_and_names_the_option() -> None:
    assert parse_kinds(["volume,image", " project "], "--kinds") == ["project", "image",
                                                                     "volume"]
    with pytest.raises(PlanError, match=r"^--kinds: unknown kind 'images' \(known: project"):
        parse_kinds(["images"], "--kinds")


def test_service_problems_count_steps_per_missing_service() -> None:
    class Step:
        def __init__(self, kind: str, source_id: str = "x") -> None:
            self.kind, self.source_id = kind, source_id

    steps = [Step("project"), Step("network"), Step("subnet"), Step("quota", "network:p"),
             Step("quota", "volume:p"), Step("volume")]
    problems = service_problems(steps, {"identity", "image", "volume"}, "kg")
    assert problems == [
        "the target cloud kg has no network service in its catalog: 3 step(s) of kind(s) "
        "quota, network, subnet need it; plan again against the target (the kinds it cannot "
        "take are left out) or with --exclude-kinds network,subnet"]


def test_config_kinds_are_checked(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="")
    path.write_text(path.read_text().replace("  kinds: []", "  kinds: [image, vms]"))
    with pytest.raises(ConfigError, match=r"selection.kinds\[1\]: unknown kind 'vms'"):
        load_config(path)


def test_planner_honours_kinds_from_config_and_arguments(snapshot_url: str,
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = config.read_text().replace("  exclude_kinds: []", "  exclude_kinds: [keypair]")
    config.write_text(text)
    full = make_plan(snapshot_url, config=config, offline=True, output=tmp_path / "a.yaml")
    kinds = {s.kind for s in full.plan.steps}
    assert "keypair" not in kinds and "network" in kinds
    assert full.plan.selection["exclude_kinds"] == ["keypair"]
    # Arguments override the configuration.
    only = make_plan(snapshot_url, config=config, offline=True, output=tmp_path / "b.yaml",
                     kinds=["role_assignment"], exclude_kinds=[])
    assert {s.kind for s in only.plan.steps} == {"project", "user", "role_assignment"}
    assert only.plan.selection["kinds_added"] == ["project", "user"]
    # Without quota steps, nothing waits on quotas.
    for step in only.plan.steps:
        assert not any(d.startswith("quota:") for d in step.depends_on)
