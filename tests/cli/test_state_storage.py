"""A state folder that is read-only, or on a device that is full: commands that write say so
(the path, read-only or no space, what to do; exit 3), and ``migrator status`` still reads a
read-only database.

Each case runs ``migrator`` in a child process inside its own user and mount namespaces
(``unshare -rm``), where the state folder is made a read-only bind mount or a tiny tmpfs that
is full: the real file-system conditions, for root too (root ignores permission bits, not a
read-only mount), and nothing outside the child sees them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.operations.context import open_state
from migrator.operations.plan import make_plan, register_plan
from migrator.sim.server import SimServer
from migrator.store.db import session_factory
from tests.cli.process import Finished, run_migrator
from tests.clouds.legacy_sim import start_legacy
from tests.conftest import upgraded
from tests.plan.conftest import save, write_config


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_work(),
                                reason="needs user and mount namespaces (unshare -rm)")

READ_ONLY = 'mount --bind "$STATE" "$STATE" && mount -o remount,ro,bind "$STATE" && exec "$@"'
# A tmpfs over the state folder holding the database and a filler that takes every byte left.
FULL = ('mount -t tmpfs -o size=1m tmpfs "$STATE" && cp "$SOURCE" "$STATE/state.db" && '
        '{ dd if=/dev/zero of="$STATE/filler" bs=4k 2>/dev/null || true; } && exec "$@"')


def in_namespace(script: str, state: Path, source: Path | None = None) -> tuple[str, ...]:
    env = f'STATE="{state}" SOURCE="{source or ""}"'
    return ("unshare", "-rm", "sh", "-c", f"{env}; export STATE SOURCE; {script}", "sh")


@pytest.fixture
def with_run(tmp_path: Path) -> Path:
    """A state database (in its own folder) holding a snapshot and a registered run."""
    state = tmp_path / "state"
    url = upgraded(f"sqlite:///{state / 'state.db'}")
    save(url)
    result = make_plan(url, config=write_config(tmp_path), offline=True,
                       output=tmp_path / "wave-1.yaml")
    with open_state(url) as engine:
        register_plan(session_factory(engine), result.plan, result.path)
    return state


def test_status_reads_a_read_only_state_folder(with_run: Path) -> None:
    db = with_run / "state.db"
    result = run_migrator("--db", str(db), "status", "--format", "json",
                          prefix=in_namespace(READ_ONLY, with_run))
    assert result.exit_code == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [(r["name"], r["status"]) for r in runs] == [("wave-1", "created")]
    assert sum(runs[0]["steps"].values()) > 0


def test_writing_into_a_read_only_state_folder_says_so(legacy: SimServer, with_run: Path
                                                       ) -> None:
    db = with_run / "state.db"
    result = run_migrator("--db", str(db), "discover", "--cloud", "legacy", "--clouds-yaml",
                          str(legacy.clouds_yaml), prefix=in_namespace(READ_ONLY, with_run))
    assert_storage_error(result, db, rf"its folder {re.escape(str(with_run))} is read-only "
                         r"\(a read-only file system\), and SQLite writes state.db-wal and "
                         r"state.db-shm beside the database \(SQLite: .+\); make it writable, "
                         r"or copy the database to a writable place and give --db; 'migrator "
                         r"status' still reads it where it is")


def test_a_full_state_device_says_so(legacy: SimServer, with_run: Path, tmp_path: Path
                                     ) -> None:
    source = tmp_path / "source.db"
    shutil.copy(with_run / "state.db", source)
    db = with_run / "state.db"
    result = run_migrator("--db", str(db), "discover", "--cloud", "legacy", "--clouds-yaml",
                          str(legacy.clouds_yaml), prefix=in_namespace(FULL, with_run, source))
    assert_storage_error(result, db, rf"no space left on the device holding "
                         rf"{re.escape(str(with_run))} \(\d[\d,]* bytes free\) \(SQLite: .+\); "
                         r"free some space, then run the command again \(an interrupted run "
                         r"continues with --resume\)")
    # Reading still works on the full device.
    status = run_migrator("--db", str(db), "status", prefix=in_namespace(FULL, with_run, source))
    assert status.exit_code == 0, status.stderr
    assert "wave-1" in status.stdout


def assert_storage_error(result: Finished, db: Path, problem: str) -> None:
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    assert len(result.error_lines) == 1, result.stderr
    pattern = f"Error: cannot write the state database {re.escape(str(db))}: {problem}"
    assert re.fullmatch(pattern, result.error_lines[0]), result.error_lines[0]


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = start_legacy(tmp_path_factory.mktemp("legacy"))
    yield server
    server.stop()
