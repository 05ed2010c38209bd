"""``migrator plan`` and ``migrator execute PLAN --dry-run`` through the CLI (offline plans on
a synthetic snapshot; the simulator-backed paths are in tests/operations/test_plan.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Invoke
from tests.plan.conftest import save, write_config


def test_plan_prints_the_summary_and_writes_the_file(invoke: Invoke, db_url: str,
                                                     tmp_path: Path) -> None:
    save(db_url)
    config = write_config(tmp_path)
    out = tmp_path / "plans" / "wave-1.yaml"
    result = invoke("--db", db_url, "plan", "--config", str(config), "--tenant", "physics",
                    "--offline", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Plan wave-1: 20 steps for 1 tenant(s) in 1 wave(s), "
                                    f"from snapshot 1 of legacy -> {out}\n")
    assert "  security_group_rule      5\n" in result.stdout
    assert "  physics     20\n" in result.stdout
    assert out.is_file()
    result = invoke("--db", db_url, "plan", "--config", str(config), "--offline",
                    "--format", "json", "-o", str(out))
    data = json.loads(result.stdout)
    assert data["summary"]["per_tenant"] == {"biology": 20, "chemistry": 21, "physics": 20}
    assert data["selection"]["tenants"] == ["biology", "chemistry", "physics"]


def test_plan_errors_are_one_line(invoke: Invoke, db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = invoke("--db", db_url, "plan", "--config", str(config), "--offline")
    assert (result.exit_code, result.stderr) == (
        7, "Error: no inventory snapshot of legacy in the state database; run 'migrator "
           "discover --cloud legacy' first\n")
    save(db_url)
    result = invoke("--db", db_url, "plan", "--config", str(config), "--offline", "--tenant",
                    "chemistry", "-o", str(tmp_path / "c.yaml"))
    assert result.exit_code == 7 and result.stderr.count("\n") == 1
    assert "select physics or pass --include-dependencies" in result.stderr
    result = invoke("--db", db_url, "plan", "--config", str(tmp_path / "none.yaml"))
    assert result.exit_code == 2 and "no such configuration file" in result.stderr


def test_execute_refuses_a_tampered_plan(invoke: Invoke, db_url: str, tmp_path: Path) -> None:
    save(db_url)
    out = tmp_path / "p.yaml"
    invoke("--db", db_url, "plan", "--config", str(write_config(tmp_path)), "--offline",
           "--tenant", "physics", "-o", str(out))
    out.write_text(out.read_text().replace("physics department", "physics dept"))
    result = invoke("--db", db_url, "execute", str(out), "--dry-run")
    assert result.exit_code == 7
    assert result.stderr.startswith(f"Error: {out}: content hash mismatch")
    result = invoke("--db", db_url, "execute", str(tmp_path / "missing.yaml"))
    assert (result.exit_code, result.stderr) == (
        7, f"Error: {tmp_path / 'missing.yaml'}: no such plan file\n")
