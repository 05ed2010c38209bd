"""Planning images and volumes from an inventory discovered from the simulator: translated
properties before and after in the plan file, members and the cross-tenant rule, volume
types mapped or refused, image and volume bytes in the summary."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from migrator.errors import PlanError
from migrator.operations.plan import make_plan
from tests.handlers.data_world import DataWorld, MiB, world

__all__ = ["world"]


def test_plan_shows_properties_members_and_bytes(world: DataWorld, tmp_path: Path) -> None:
    url = world.url(tmp_path)
    result = make_plan(url, config=world.config(tmp_path), clouds_yaml=world.sim.clouds_yaml,
                       output=tmp_path / "p.yaml")
    plan = result.plan
    assert plan.summary["per_kind"]["image"] == 6 and plan.summary["per_kind"]["volume"] == 4
    assert plan.summary["data"]["physics"] == {"images": 4, "image_bytes": 2 * 4096 + MiB + 1,
                                               "volumes": 2, "volume_bytes": 2 << 30}
    text = (tmp_path / "p.yaml").read_text()
    written = yaml.safe_load(text)
    arm = next(s for s in written["steps"] if s["name"] == "physics-arm64-0")
    assert arm["depends_on"][0].startswith("project:")
    assert arm["spec"]["attrs"]["hw_firmware_type"] == "uefi"
    assert "hw_boot_mode" not in arm["spec"]["attrs"]
    assert arm["spec"]["properties"]["before"]["hw_loader_path"].endswith("AAVMF_CODE.fd")
    assert arm["spec"]["properties"]["changes"] == [
        "hw_firmware_type: (none) -> 'uefi' [default: AArch64 boots UEFI on the virt machine]",
        "hw_boot_mode: 'uefi' -> (dropped) [default: legacy UEFI hack keys]",
        "hw_loader_path: '/usr/share/AAVMF/AAVMF_CODE.fd' -> (dropped) [default: legacy "
        "UEFI hack keys]"]
    members = [s for s in plan.steps if s.kind == "image_member"]
    assert sorted(s.name for s in members) == ["chemistry-x86-1 -> physics",
                                                "physics-x86-1 -> chemistry"]
    shared = next(s for s in plan.steps if s.name == "physics-x86-1")
    assert shared.spec["attrs"]["visibility"] == "shared"
    boot = next(s for s in plan.steps if s.name == "physics-boot-0")
    image_key = next(s.key for s in plan.steps if s.name == "physics-arm64-0")
    assert image_key in boot.depends_on and "quota:volume:" in " ".join(boot.depends_on)
    assert boot.spec["attrs"]["volume_type"] == "__DEFAULT__"
    assert boot.spec["attrs"]["volume_image_metadata"]["hw_firmware_type"] == "uefi"
    assert plan.mappings["volume_types"] == {"ssd": {"target": "__DEFAULT__"},
                                             "standard": {"target": "__DEFAULT__"}}


def test_member_outside_the_selection(world: DataWorld, tmp_path: Path) -> None:
    url = world.url(tmp_path)
    with pytest.raises(PlanError, match=r"^image physics-x86-1 \(\S+\) of tenant physics "
                                        r"refers to project chemistry \(\S+\) of tenant "
                                        r"chemistry, which is not selected; select chemistry "
                                        r"or pass --include-dependencies$"):
        make_plan(url, config=world.config(tmp_path), tenants=["physics"],
                  clouds_yaml=world.sim.clouds_yaml, output=tmp_path / "p.yaml")
    plan = make_plan(url, config=world.config(tmp_path, **{
        "members_outside: refuse": "members_outside: skip"}), tenants=["physics"],
        clouds_yaml=world.sim.clouds_yaml, output=tmp_path / "p.yaml").plan
    assert not [s for s in plan.steps if s.kind == "image_member"]
    assert any("shared with tenant chemistry, which is not selected: that member is skipped"
               in w for w in plan.warnings)
    waves = make_plan(url, config=world.config(tmp_path, **{
        "waves: []": "waves: [[physics], [chemistry]]"}),
        clouds_yaml=world.sim.clouds_yaml, output=tmp_path / "w.yaml").plan
    member = next(s for s in waves.steps if s.name == "physics-x86-1 -> chemistry")
    assert member.wave == 2 and member.tenant == "physics"


def test_missing_volume_type_mapping(world: DataWorld, tmp_path: Path) -> None:
    url = world.url(tmp_path)
    config = world.config(tmp_path, **{
        "volume_types: {standard: __DEFAULT__, ssd: __DEFAULT__}":
            "volume_types: {standard: __DEFAULT__}",
        "members_outside: refuse": "members_outside: skip"})
    with pytest.raises(PlanError) as caught:
        make_plan(url, config=config, tenants=["physics"], clouds_yaml=world.sim.clouds_yaml,
                  output=tmp_path / "p.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("volume physics-data-1 (")
    assert message.endswith(") of tenant physics has volume type 'ssd', which has no mapping "
                            "in mappings.volume_types and the target has no type of that name")
    assert not (tmp_path / "p.yaml").exists()
