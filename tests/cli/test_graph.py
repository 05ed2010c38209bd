"""``migrator plan --run NAME --graph FILE``: a run's DAG coloured by state."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.cli.conftest import Invoke
from tests.cli.test_audit import make_run


def test_a_run_drawn_through_the_cli_is_coloured_by_state(invoke: Invoke, db_url: str,
                                                          tmp_path: Path) -> None:
    make_run(db_url)
    out = tmp_path / "r1.dot"
    result = invoke("--db", db_url, "plan", "--run", "r1", "--graph", str(out))
    assert (result.exit_code, result.stdout) == (
        0, f"Graph: {out} (4 steps of 2 tenant(s), one node per step: 4 nodes, 2 edges)\n")
    text = out.read_text()
    assert '[label="project\\nchemistry\\n[failed]", fillcolor="#ffcdd2"]' in text
    assert '[label="network\\nchem-net\\n[blocked]", fillcolor="#ffe0b2"]' in text
    assert '[label="network\\nphysics-net\\n[done]", fillcolor="#c8e6c9"]' in text
    if shutil.which("dot"):
        checked = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True,
                                 check=False)
        assert checked.returncode == 0, checked.stderr
    alone = invoke("--db", db_url, "plan", "--run", "r1")
    assert alone.exit_code == 2 and "--run draws a run's graph: give --graph FILE too" in \
        alone.stderr
    missing = invoke("--db", db_url, "plan", "--run", "nosuch", "--graph", str(out))
    assert (missing.exit_code, missing.stderr) == (
        4, "Error: no run named 'nosuch' in the state database\n")
