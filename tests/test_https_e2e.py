"""The tenants story over HTTPS: both simulated clouds serve TLS with the simulator's own CA
(``cacert`` in clouds.yaml), and ``migrator discover``, ``plan`` and ``execute`` run through the
CLI as over plain HTTP; every migrated resource is then checked on the target. The same
discovery with ``verify: false``, and a refusal, in one line and with exit code 8, when
clouds.yaml names another CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from migrator.cli.main import cli
from migrator.operations.plan import load_plan
from migrator.sim.tls import ensure_tls_files
from tests.e2e_support import World, assert_migrated, assert_no_duplicates, start_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = start_world(tmp_path_factory.mktemp("https") / "world", tls=True)
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(autouse=True)
def no_ca_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def rewrite_clouds_yaml(world: World, path: Path, **changes: object) -> Path:
    """Every entry of the simulator's clouds.yaml with ``changes`` (None drops a key)."""
    data = yaml.safe_load(world.clouds_yaml.read_text())
    for entry in data["clouds"].values():
        for key, value in changes.items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def discover_with(world: World, clouds_yaml: Path) -> Result:
    return CliRunner().invoke(cli, ["--db", world.db_url, "discover", "--config",
                                    str(world.config), "--clouds-yaml", str(clouds_yaml)])


def test_discover_plan_execute_over_https(world: World) -> None:
    clouds = yaml.safe_load(world.clouds_yaml.read_text())["clouds"]
    assert all(e["auth"]["auth_url"].startswith("https://") for e in clouds.values())
    assert {e["cacert"] for e in clouds.values()} == {str(world.sim.cacert)}
    result = world.cli("discover", "--config", str(world.config))
    assert result.exit_code == 0, result.output
    plan_path = world.root / "plans" / "https.yaml"
    result = world.cli("plan", "--config", str(world.config), "-o", str(plan_path))
    assert result.exit_code == 0, result.output
    result = world.cli("execute", str(plan_path))
    assert result.exit_code == 0, result.output
    assert "Run https: finished" in result.stdout
    plan = load_plan(plan_path)
    report = assert_migrated(world, plan, world.db_url, "https")
    assert report.checked["id_map"] == len(plan.steps)
    assert assert_no_duplicates(world.target)["project"] == 3


def test_discover_with_verify_false(world: World) -> None:
    path = rewrite_clouds_yaml(world, world.root / "insecure.yaml", cacert=None, verify=False)
    result = discover_with(world, path)
    assert result.exit_code == 0, result.output
    assert "[limited credentials]" in result.stdout


def test_a_wrong_ca_is_refused_in_one_line(world: World, tmp_path: Path) -> None:
    other = ensure_tls_files(tmp_path / "other-ca")
    path = rewrite_clouds_yaml(world, tmp_path / "wrong-ca.yaml", cacert=str(other.ca_cert))
    result = discover_with(world, path)
    assert result.exit_code == 8
    url = f"{world.sim.cloud('legacy').base_url}/identity/v3"
    assert result.stderr == (
        f"Error: cloud legacy-operator: cannot reach {url}: TLS: certificate verify failed: "
        "unable to get local issuer certificate (check cacert, verify or insecure in "
        "clouds.yaml, or REQUESTS_CA_BUNDLE)\n")
