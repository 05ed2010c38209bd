"""The top-level command loads commands on first use: ``--version``, ``--help`` and ``status``
import none of the heavy libraries (checked in a fresh interpreter's ``sys.modules``; how
quick that makes them is measured by benchmarks/bench_startup.py, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from migrator import __version__
from migrator.cli.main import COMMANDS, cli
from tests.cli.conftest import Invoke
from tests.cli.test_status import seed

# What a command that neither reaches a cloud nor runs the engine must not import.
HEAVY = ("sqlalchemy", "alembic", "openstack", "keystoneauth1", "requests", "aiohttp",
         "networkx", "transitions", "psycopg", "rich", "migrator.sim", "migrator.engine",
         "migrator.clouds", "migrator.handlers", "migrator.plan", "migrator.operations.execute",
         "migrator.operations.discover", "migrator.operations.context", "migrator.store.db")
# Prints what the command printed, then the imported modules as the last line.
PROBE = """
import json, sys
from migrator.cli.main import main
sys.argv = ["migrator", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported_by(args: list[str], cwd: Path) -> tuple[str, int, set[str]]:
    """What ``migrator ARGS`` printed (stdout and stderr), its exit code, what it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "MIGRATOR_DB": "unused.db"})
    *printed, last = done.stdout.splitlines()
    probe = json.loads(last)
    return "\n".join(printed) + done.stderr, probe["code"], set(probe["modules"])


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY))


def test_version_imports_no_command(tmp_path: Path) -> None:
    out, code, modules = imported_by(["--version"], tmp_path)
    assert (out, code) == (f"migrator, version {__version__}", 0)
    assert heavy(modules) == []
    assert not {m for m in modules if m.startswith("migrator.cli.")} - {
        "migrator.cli.main", "migrator.cli.context"}


def test_help_lists_every_command_without_heavy_imports(tmp_path: Path) -> None:
    out, code, modules = imported_by(["--help"], tmp_path)
    assert code == 0
    listed = [line.split()[0] for line in out.split("Commands:\n")[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    assert listed == sorted(COMMANDS)
    assert heavy(modules) == []


@pytest.mark.parametrize("args", [["status", "--format", "json"], ["status"]])
def test_status_of_a_sqlite_database_without_heavy_imports(db_url: str, tmp_path: Path,
                                                           args: list[str]) -> None:
    seed(db_url)
    out, code, modules = imported_by(["--db", db_url, *args], tmp_path)
    assert code == 0, out
    assert "wave-1" in out
    assert heavy(modules) == []


def test_status_of_a_missing_database_loads_sqlalchemy_for_the_error(tmp_path: Path) -> None:
    out, code, modules = imported_by(["--db", str(tmp_path / "none.db"), "status"], tmp_path)
    assert code == 3
    assert out == f"Error: no state database at {tmp_path / 'none.db'}; run 'migrator init' " \
        "to create it\n"
    assert "sqlalchemy" in modules


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads(invoke: Invoke, name: str) -> None:
    command = cli.get_command(None, name)  # type: ignore[arg-type]
    assert command is not None and command.name == name
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: migrator {name} ")


def test_an_unknown_command_is_refused(invoke: Invoke) -> None:
    result = invoke("statu")
    assert result.exit_code == 2
    assert "No such command 'statu'" in result.stderr
