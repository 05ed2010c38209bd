"""Servers cut over a wave at a time, through the CLI against the simulator: two Liberty
tenants with three servers each, ``selection.waves: [[physics], [chemistry]]``. ``execute
--wave 1`` moves physics' servers (target ACTIVE, or SHUTOFF as the source was; downtime
recorded) and leaves chemistry's alone on both clouds; ``--wave 2`` then moves chemistry's.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.servers_world import ServersWorld, raw_servers, servers_world, target_by_source

WAVES = {"waves: []": "waves: [[physics], [chemistry]]"}


def _downtimes(world: ServersWorld, url: str) -> dict[str, tuple[int, float]]:
    result = world.cli(url, "status", "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["tenant"]: (row["servers"], row["worst_seconds"])
            for row in json.loads(result.stdout)["servers"]}


def _check_moved(world: ServersWorld, tenant: str, before: dict[str, dict[str, object]]
                 ) -> None:
    legacy = raw_servers(world.legacy)
    by_source = target_by_source(world.target)
    for name in (f"{tenant}-vm0", f"{tenant}-vm1", f"{tenant}-vm2"):
        found = by_source.get(str(legacy[name]["id"])) or []
        assert len(found) == 1, (name, found)
        want = "SHUTOFF" if before[name]["status"] == "SHUTOFF" else "ACTIVE"
        assert found[0]["status"] == want, (name, found[0]["status"])
        assert legacy[name]["status"] == "SHUTOFF", name


def test_execute_wave_by_wave_moves_only_that_waves_servers(tmp_path: Path) -> None:
    with servers_world(tmp_path, tenants=2) as world:
        url = world.url(tmp_path / "run")
        config = world.config(tmp_path / "run", **WAVES)
        plan_file = tmp_path / "plans" / "waves.yaml"
        planned = world.cli(url, "plan", "--config", str(config), "-o", str(plan_file),
                            "--format", "json")
        assert planned.exit_code == 0, planned.output
        waves = {row["server"]: row["wave"] for row in json.loads(planned.stdout)["servers"]}
        assert waves == {f"{t}-vm{i}": w for t, w in (("physics", 1), ("chemistry", 2))
                         for i in range(3)}
        before = raw_servers(world.legacy)
        assert before["chemistry-vm0"]["status"] == "ACTIVE"

        first = world.cli(url, "execute", str(plan_file), "--wave", "1")
        assert first.exit_code == 0, first.output
        _check_moved(world, "physics", before)
        # Wave 2 is untouched on both clouds: the sources as they were, nothing on the target.
        legacy = raw_servers(world.legacy)
        by_source = target_by_source(world.target)
        for i in range(3):
            name = f"chemistry-vm{i}"
            assert legacy[name]["status"] == before[name]["status"], name
            assert str(legacy[name]["id"]) not in by_source, name
        downtimes = _downtimes(world, url)
        assert list(downtimes) == ["physics"] and downtimes["physics"][0] == 3
        assert downtimes["physics"][1] > 0

        second = world.cli(url, "execute", str(plan_file), "--wave", "2")
        assert second.exit_code == 0, second.output
        _check_moved(world, "chemistry", before)
        _check_moved(world, "physics", before)  # still one each: nothing made twice
        downtimes = _downtimes(world, url)
        assert sorted(downtimes) == ["chemistry", "physics"]
        assert [downtimes[t][0] for t in ("chemistry", "physics")] == [3, 3]

