"""``migrator execute`` as an operator sees it: on a terminal, one live display (the steps
row, a row per active transfer with its bytes, the overall bytes row), drawn with the rich
this environment has and with the oldest rich the package accepts; in a pipe, plain lines.

The plan: one tenant of a seeded Liberty simulator (tenant kinds, two images, two volumes)
onto an empty modern one, discovered and planned through the CLI. ``--bandwidth`` makes each
copy last a few seconds (a cap, so a slower machine only makes them longer), long enough for
a transfer's own row to be on screen for several refreshes.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from migrator.clouds.connection import open_cloud
from migrator.config import SAMPLE
from migrator.operations.plan import load_plan
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from tests.cli.conftest import Invoke
from tests.cli.terminal import Drawn, run_on_terminal

COPY_BYTES = 512 << 10  # of each image and each volume's data
RATE = "1MiB"  # --bandwidth: all copies together
ENTRY = "from migrator.cli.main import main; main()"


@dataclass
class Planned:
    root: Path
    db_url: str
    plan: Path
    clouds_yaml: Path
    steps: int
    copies: int  # images and volumes

    def execute_args(self) -> list[str]:
        return ["--db", self.db_url, "execute", str(self.plan), "--clouds-yaml",
                str(self.clouds_yaml), "--bandwidth", RATE]


@pytest.fixture
def planned(tmp_path: Path, invoke: Invoke) -> Iterator[Planned]:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(generate(SeedShape(
        tenants=1, images_per_tenant=2, volumes_per_tenant=2, image_size=COPY_BYTES,
        volume_data_size=COPY_BYTES))))
    with SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                   tmp_path / "sim", seed=seed) as server:
        _prepare_target(server.clouds_yaml)
        config = tmp_path / "migrator.yaml"
        config.write_text(SAMPLE.replace("state/passwords.yaml",
                                         str(tmp_path / "passwords.yaml"))
                          .replace("volume_types: {}", "volume_types: {standard: __DEFAULT__}")
                          .replace("poll_interval: 2 ", "poll_interval: 0.1"))
        url = f"sqlite:///{tmp_path / 'state.db'}"
        plan = tmp_path / "plans" / "term.yaml"
        clouds = ["--clouds-yaml", str(server.clouds_yaml)]
        for args in (["init", "--config", str(config)],
                     ["discover", "--config", str(config), *clouds],
                     ["plan", "--config", str(config), "-o", str(plan), *clouds]):
            result = invoke("--db", url, *args)
            assert result.exit_code == 0, result.output
        steps = load_plan(plan).steps
        yield Planned(tmp_path, url, plan, server.clouds_yaml, len(steps),
                      sum(1 for s in steps if s.kind in ("image", "volume")))


def _prepare_target(clouds_yaml: Path) -> None:
    """The target's external network and the legacy volume type, as the demo prepares them."""
    handle = open_cloud("target", config_file=clouds_yaml, role="target")
    try:
        net = handle.conn.network.create_network(name="public", is_router_external=True)
        handle.conn.network.create_subnet(network_id=net.id, ip_version=6,
                                          cidr="2001:db8:ffff::/64", enable_dhcp=False)
        handle.conn.block_storage.create_type(name="ssd")
    finally:
        handle.close()


def terminal_env(extra_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TERM", "MIGRATOR_DB",
                        "PYTHONPATH")}
    env["TERM"] = "xterm-256color"
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    return env


def assert_drawn(drawn: Drawn, planned: Planned) -> None:
    """One display whose last frame shows every step done and every byte copied, a
    transfer's own row with its bytes on the way, then the run's summary line."""
    assert drawn.exit_code == 0, drawn.text
    screen = drawn.screen
    assert "LiveError" not in drawn.text and "Traceback" not in drawn.text, drawn.text
    steps_rows = [line for line in screen if line.startswith("executing ")]
    assert len(steps_rows) == 1, drawn.text
    assert re.search(rf" {planned.steps}/{planned.steps} ", steps_rows[0]), steps_rows
    overall = [line for line in screen if line.startswith("all transfers ")]
    total_mib = planned.copies * COPY_BYTES / 2**20
    assert len(overall) == 1, drawn.text
    assert f" {total_mib:.1f}/{total_mib:.1f} MiB " in overall[0], overall
    assert screen.index(overall[0]) == screen.index(steps_rows[0]) + 1
    assert re.fullmatch(r"Run term: finished in [\d.]+ s \(\d+ done\)", screen[-1]), screen[-1]
    # A copy's own row, while it ran: its label, a bar, bytes done of its size.
    size_kib = f"{COPY_BYTES / 1024:.1f} KiB"
    moving = [row for row in drawn.rows if re.match(
        rf"(image|volume) \S+ \(physics\) .*━.* [\d.]+/{re.escape(size_kib)} ", row)]
    assert moving, "\n".join(drawn.rows[-60:])
    # The frames counted up: some frame showed fewer steps done than the last.
    counts = {int(m[1]) for row in drawn.rows
              if (m := re.match(rf"executing .* (\d+)/{planned.steps} ", row))}
    assert len(counts) > 1 and max(counts) == planned.steps, counts


def test_execute_on_a_terminal(planned: Planned) -> None:
    drawn = run_on_terminal([sys.executable, "-c", ENTRY, *planned.execute_args()],
                            cwd=planned.root, env=terminal_env())
    assert_drawn(drawn, planned)


def oldest_accepted(package: str) -> str:
    """The lowest version of ``package`` that migrator's requirements accept (``>=X``)."""
    for text in importlib.metadata.requires("migrator") or []:
        requirement = Requirement(text)
        if requirement.name == package and requirement.marker is None:
            floors = [s.version for s in requirement.specifier if s.operator == ">="]
            assert len(floors) == 1, f"{text}: no single >= floor"
            return floors[0]
    raise AssertionError(f"migrator does not require {package}")


@pytest.fixture(scope="session")
def oldest_rich(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the oldest rich that pyproject accepts (installed once, kept in
    pytest's cache), to put first on the child's PYTHONPATH. Skipped when pip cannot fetch
    it, except in CI (CI=true), where that is a failure."""
    version = oldest_accepted("rich")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    folder = Path(cache.mkdir(f"rich-{version}")) if cache is not None else \
        tmp_path_factory.mktemp(f"rich-{version}")
    if not (folder / "rich" / "live.py").is_file():
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                               "--target", str(folder), f"rich=={version}"],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            reason = f"cannot install rich=={version}: {done.stderr.strip()[-500:]}"
            if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
                pytest.fail(f"{reason} (CI=true: the oldest rich must be tested)")
            pytest.skip(reason)
    return folder


def test_execute_on_a_terminal_with_the_oldest_rich_accepted(planned: Planned,
                                                             oldest_rich: Path) -> None:
    env = terminal_env(oldest_rich)
    found = subprocess.run([sys.executable, "-c", "import rich, importlib.metadata as m; "
                            "print(rich.__file__, m.version('rich'))"],
                           env=env, capture_output=True, text=True, check=True).stdout.split()
    version = oldest_accepted("rich")
    assert Path(found[0]).is_relative_to(oldest_rich)
    assert found[1] in (version, f"{version}.0"), found
    drawn = run_on_terminal([sys.executable, "-c", ENTRY, *planned.execute_args()],
                            cwd=planned.root, env=env)
    assert_drawn(drawn, planned)


def test_execute_in_a_pipe_prints_plain_lines(planned: Planned, invoke: Invoke) -> None:
    result = invoke(*planned.execute_args())
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b" not in out and "━" not in out
    lines = out.splitlines()
    assert re.fullmatch(r"Run term: finished in [\d.]+ s \(\d+ done\)", lines[-1]), lines[-1]
    done = [int(m[1]) for line in lines
            if (m := re.match(rf"\[(\d+)/{planned.steps}\] done ", line))]
    assert done == list(range(1, planned.steps + 1)), done
    size = f"{COPY_BYTES / 1024:.1f} KiB"
    started = [line for line in lines if re.fullmatch(
        rf"transfer (image|volume) \S+ \(physics\): started \({size}\)", line)]
    ended = [line for line in lines if re.fullmatch(
        rf"transfer (image|volume) \S+ \(physics\): done, {size} in [\d.]+ s", line)]
    assert len(started) == len(ended) == planned.copies, out
    assert any(re.fullmatch(r"transfer (image|volume) \S+ \(physics\): \d+% [\d.]+ KiB at "
                            r"[\d.]+ (B|KiB|MiB)/s \(all transfers: [\d.]+ (KiB|MiB)\)", line)
               for line in lines), out
