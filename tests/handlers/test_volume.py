"""Volumes through plan -> execute against the simulator: a run stopped in a middle phase of
the volume copy (the target refuses to create volumes: the step fails after the bytes were
copied) and resumed ends with exactly one target volume per legacy volume, in the migrated
project, the bytes not sent again, and no temporary image left on either side."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.operations.plan import make_plan
from migrator.store.db import make_engine
from migrator.store.models import Step
from migrator.transfer.volume import temp_image_name
from migrator.transfer.volume_copy import SOURCE_KEY
from tests.handlers.data_world import DataWorld, faults, step_events, world
from tests.sim.conftest import Admin

__all__ = ["faults", "world"]
CREATE = "POST /volume/v3/*/volumes"


def checkpoints(url: str) -> dict[str, dict[str, object]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Step.key, Step.phase, Step.checkpoint)
                                .where(Step.kind == "volume")).all()
    finally:
        engine.dispose()
    return {str(k): {"phase": p, **dict(c or {})} for k, p, c in rows}


def test_volume_resumed_from_a_middle_phase(world: DataWorld, tmp_path: Path,
                                            faults: dict[str, Admin]) -> None:
    url = world.url(tmp_path)
    config = world.config(tmp_path, **{"members_outside: refuse": "members_outside: skip"})
    plan = make_plan(url, config=config, tenants=["physics"],
                     clouds_yaml=world.sim.clouds_yaml, output=tmp_path / "p.yaml").plan
    volumes = [s for s in plan.steps if s.kind == "volume"]
    assert len(volumes) == 2
    boot = next(s for s in volumes if s.name == "physics-boot-0")
    assert boot.spec["attrs"]["volume_type"] == "__DEFAULT__"
    assert f"image:{boot.spec['attrs']['volume_image_metadata']['image_id']}" in boot.depends_on
    faults["target"].add_fault(match=CREATE, status=500, times=100)
    first = execute_plan(url, plan_path := tmp_path / "p.yaml",
        ExecuteOptions(clouds_yaml=world.sim.clouds_yaml, handle_sigint=False, backoff_base=0.01,
                       max_attempts=1))
    assert first.run is not None and first.run.status == "failed"
    reached = checkpoints(url)
    assert {v["phase"] for v in reached.values()} == {"copy_temp_image"}, reached
    copied = {k: v["copy"]["copied"] for k, v in reached.items()}  # type: ignore[index]
    faults["target"].clear_faults()
    resumed = execute_plan(url, plan_path,
        ExecuteOptions(resume=True, clouds_yaml=world.sim.clouds_yaml, handle_sigint=False,
                       backoff_base=0.01))
    assert resumed.run is not None and resumed.run.status == "finished", resumed.run
    done = checkpoints(url)
    for key, cp in done.items():
        assert cp["phase"] == "verify" and cp["copy"]["verified"] is True  # type: ignore[index]
        # The bytes were not copied again: the checkpoint kept the first copy.
        assert cp["copy"]["copied"] == copied[key]  # type: ignore[index]
    project = world.target.identity.find_project("physics")
    target_state = world.sim.cloud("target").state
    legacy_state = world.sim.cloud("legacy").state
    for step in volumes:
        made = [v for v in target_state.values("volumes")
                if (v.get("metadata") or {}).get(SOURCE_KEY) == step.source_id]
        assert len(made) == 1 and made[0]["status"] == "available", made
        assert made[0]["project_id"] == project.id and made[0]["volume_type"] == "__DEFAULT__"
        for state in (target_state, legacy_state):
            assert [i["id"] for i in state.values("images")
                    if i.get("name") == temp_image_name(step.source_id)] == []
        source = legacy_state.get("volumes", step.source_id)
        assert source is not None
        assert (world.sim.cloud("target").digest(made[0]["_content"]).md5
                == world.sim.cloud("legacy").digest(source["_content"]).md5)
    # The boot volume's image metadata names the migrated image, properties translated.
    vim = next(v for v in target_state.values("volumes")
               if (v.get("metadata") or {}).get(SOURCE_KEY) == boot.source_id
               )["volume_image_metadata"]
    image_step = f"image:{boot.spec['attrs']['volume_image_metadata']['image_id']}"
    assert vim["image_id"] != image_step.split(":", 1)[1]
    assert vim["hw_firmware_type"] == "uefi" and "hw_boot_mode" not in vim
    failed = [key for key, _ in step_events(url, "fail")]
    assert sorted(failed) == sorted(s.key for s in volumes)
