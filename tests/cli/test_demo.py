"""``migrator demo``: the whole story on simulated clouds, interrupted once and resumed."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import yaml

from migrator.clouds.connection import open_cloud
from migrator.sim.server import CloudSpec, SimServer
from tests.cli.conftest import Invoke
from tests.cli.terminal import run_on_terminal


def test_demo_runs_the_story_and_resumes(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("demo", "--tenants", "2", "--interrupt-after", "5", "--dir",
                    str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    out = result.output
    sections = re.findall(r"^=== (.*)$", out, flags=re.MULTILINE)
    assert sections == [
        "Simulated clouds", "migrator init", "migrator discover --cloud legacy",
        "migrator plan -o plans/demo.yaml",
        "migrator execute plans/demo.yaml   (interrupts itself once)",
        "migrator execute plans/demo.yaml --resume", "migrator status",
        "verification: every image and volume, read on both clouds"]
    first, resumed = re.findall(r"^Run demo: (\w+) in", out, flags=re.MULTILINE)
    assert (first, resumed) == ("interrupted", "finished")
    assert "the audit log shows no step completed twice." in out
    assert "done project physics (physics)" in out
    # migrator plan shows, per image, the properties the rules change.
    assert re.search(r"physics +physics-arm64-0 +hw_boot_mode: 'uefi' -> \(dropped\)", out)
    assert re.search(r"physics +physics-arm64-0 +hw_firmware_type: \(none\) -> 'uefi'", out)
    # Images and volumes moved, read again on both sides, the AArch64 properties translated.
    assert "4 images and 4 volumes moved; every one matches its legacy size and checksum." in out
    assert "not moved yet" not in out
    rows = re.findall(r"^  (physics|chemistry) +(image|volume) +(\S+) .* (yes|NO)$", out,
                      flags=re.MULTILINE)
    assert len(rows) == 8 and {r[3] for r in rows} == {"yes"}, rows
    assert "  hw_boot_mode: uefi -> (dropped)" in out
    assert "  hw_firmware_type: (none) -> uefi" in out
    assert re.search(r"^transfer image physics-arm64-0 \(physics\): done, ", out, re.MULTILINE)
    # Kept with --dir: the plan file and the clouds are there to look at.
    workdir = tmp_path / "demo"
    plan = yaml.safe_load((workdir / "plans" / "demo.yaml").read_text())
    # tenant steps, 2 images, 2 volumes, the member of the shared image and 3 servers per
    # tenant (their 2 volumes moved by the database server's step; the default security
    # group the servers use)
    assert plan["summary"]["per_tenant"] == {"chemistry": 30, "physics": 29}
    assert plan["summary"]["per_kind"]["server"] == 6
    assert "Servers cut over" in out
    assert (workdir / "state" / "migrator.db").is_file()


def test_demo_target_holds_the_migrated_tenants(invoke: Invoke, tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = invoke("demo", "--tenants", "1", "--interrupt-after", "0", "--dir", str(workdir))
    assert result.exit_code == 0, result.output
    assert "(interrupts itself once)" in result.output
    assert "--resume" not in result.output.split("=== migrator status")[0].split(
        "interrupts itself once)")[1]
    # The simulator saved its state on the way out: the target still has what was migrated.
    with SimServer([CloudSpec("target", "modern")], workdir / "sim") as srv:
        handle = open_cloud("target", config_file=srv.clouds_yaml, role="target")
        conn = handle.conn
        project = conn.identity.find_project("physics")
        assert project is not None
        nets = [n.name for n in conn.network.networks(project_id=project.id)]
        assert nets == ["physics-net"]
        handle.close()


def test_demo_over_https(invoke: Invoke, tmp_path: Path) -> None:
    """The whole story (discover, plan, execute, image and volume bytes, verification) with
    both clouds served over HTTPS by the simulator's own CA."""
    workdir = tmp_path / "demo"
    result = invoke("demo", "--tenants", "1", "--interrupt-after", "0", "--tls", "--dir",
                    str(workdir))
    assert result.exit_code == 0, result.output
    assert re.search(r"^legacy: liberty cloud at https://127\.0\.0\.1:\d+$", result.output,
                     re.MULTILINE)
    assert re.search(r"^Run demo: finished in", result.output, re.MULTILINE)
    assert "2 images and 2 volumes moved; every one matches its legacy size and checksum." \
        in result.output
    clouds = yaml.safe_load((workdir / "sim" / "clouds.yaml").read_text())["clouds"]
    assert clouds["target"]["cacert"] == str(workdir / "sim" / "tls" / "ca.pem")


def test_demo_on_a_terminal_draws_each_run_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "MIGRATOR_DB")}
    drawn = run_on_terminal([sys.executable, "-c", "from migrator.cli.main import main; main()",
                             "demo", "--tenants", "1", "--interrupt-after", "5"],
                            cwd=tmp_path, env={**env, "TERM": "xterm-256color"})
    assert drawn.exit_code == 0, drawn.text
    assert "Traceback" not in drawn.text, drawn.text
    # Each run's display left its last frame: the interrupted run's, then the resumed one's.
    steps = [line for line in drawn.screen if line.startswith("executing ")]
    assert len(steps) == 2, drawn.text
    first, last = (re.search(r" (\d+)/(\d+) ", row) for row in steps)
    assert first and last and first[2] == last[1] == last[2] and first[1] != first[2], steps
    runs = [line.split(" in ")[0] for line in drawn.screen if line.startswith("Run demo: ")]
    assert runs == ["Run demo: interrupted", "Run demo: finished"], drawn.text
    assert "every one matches its legacy size and checksum." in drawn.text
