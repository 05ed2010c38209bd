"""``migrator discover`` in-process against the Liberty simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from migrator.sim.server import SimServer
from tests.cli.conftest import Invoke
from tests.clouds.legacy_sim import start_legacy


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = start_legacy(tmp_path_factory.mktemp("legacy"))
    yield server
    server.stop()


def test_discover_table(invoke: Invoke, sim: SimServer, db_url: str) -> None:
    result = invoke("--db", db_url, "discover", "--cloud", "legacy", "--clouds-yaml",
                    str(sim.clouds_yaml))
    assert result.exit_code == 0, result.output
    assert "Snapshot 1 of legacy:" in result.output
    assert "[admin credentials]" in result.output
    assert "Items by kind" in result.output and "security_group_rule" in result.output
    assert "physics" in result.output


def test_discover_json_for_one_tenant(invoke: Invoke, sim: SimServer, db_url: str) -> None:
    result = invoke("--db", db_url, "discover", "--cloud", "legacy", "--tenant", "chemistry",
                    "--clouds-yaml", str(sim.clouds_yaml), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tenants"] == ["chemistry"] and data["counts"]["quota"] == 3
    assert data["api_calls"] > 0 and data["unreadable"] == []


def test_unknown_cloud_is_one_line(invoke: Invoke, sim: SimServer, db_url: str) -> None:
    result = invoke("--db", db_url, "discover", "--cloud", "nosuch", "--clouds-yaml",
                    str(sim.clouds_yaml))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no cloud named 'nosuch' in clouds.yaml")
    assert result.stderr.count("\n") == 1


def test_progress_lines_when_not_a_terminal(invoke: Invoke, sim: SimServer,
                                            db_url: str) -> None:
    result = invoke("--db", db_url, "discover", "--cloud", "legacy", "--clouds-yaml",
                    str(sim.clouds_yaml))
    assert "connected to legacy" in result.stderr
    assert "identity:" in result.stderr
