"""When the simulator writes its state file: after a pause in traffic, at the latest
``max_delay`` after a change, and always on stop; a restart finds what was saved."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from migrator.sim.server import CloudSpec, SavePolicy, SimServer
from tests.sim.conftest import connect
from tests.timing import scaled


def _saved(data_dir: Path, text: str) -> bool:
    return text.encode() in (data_dir / "state-legacy.json").read_bytes()


def _traffic_for(srv: SimServer, seconds: float, data_dir: Path, name: str) -> bool:
    """Requests every 50 ms for ``seconds``; whether ``name`` reached the file meanwhile."""
    base = srv.cloud("legacy").base_url
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        requests.get(f"{base}/identity/v3", timeout=10)
        if _saved(data_dir, name):
            return True
        time.sleep(0.05)
    return False


def _wait_saved(data_dir: Path, name: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _saved(data_dir, name):
            return True
        time.sleep(0.05)
    return False


def test_a_change_is_saved_once_traffic_pauses(tmp_path: Path) -> None:
    # Requests every 50 ms for 3 s: no pause of 1.5 s (a busy machine may stall the client
    # for a moment, not for that long: the quiet time scales), so no save until they stop.
    policy = SavePolicy(quiet=scaled(1.5), max_delay=60.0, check_every=0.05)
    with SimServer([CloudSpec("legacy", "liberty")], tmp_path, save_policy=policy) as srv:
        connect(srv, "legacy").identity.create_project(name="after-pause", domain_id="default")
        assert not _traffic_for(srv, 3.0, tmp_path, "after-pause")
        assert _wait_saved(tmp_path, "after-pause", scaled(5.0))


def test_unbroken_traffic_delays_a_save_by_at_most_max_delay(tmp_path: Path) -> None:
    policy = SavePolicy(quiet=60.0, max_delay=0.5, check_every=0.05)
    with SimServer([CloudSpec("legacy", "liberty")], tmp_path, save_policy=policy) as srv:
        connect(srv, "legacy").identity.create_project(name="bounded", domain_id="default")
        assert _traffic_for(srv, scaled(3.0), tmp_path, "bounded")


def test_stop_saves_and_a_restart_finds_the_change(tmp_path: Path) -> None:
    policy = SavePolicy(quiet=60.0, max_delay=60.0)
    with SimServer([CloudSpec("legacy", "liberty")], tmp_path, save_policy=policy) as srv:
        connect(srv, "legacy").identity.create_project(name="on-stop", domain_id="default")
        assert not _saved(tmp_path, "on-stop")
    assert _saved(tmp_path, "on-stop")
    again = SimServer([CloudSpec("legacy", "liberty")], tmp_path)
    assert again.cloud("legacy").state.find_one("projects", name="on-stop") is not None
