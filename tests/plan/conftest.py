"""Planner fixtures: a state database holding a synthetic 3-tenant snapshot (saved with
store.inventory.save_snapshot) and a configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.config import SAMPLE
from migrator.store.db import make_engine, session_factory
from migrator.store.inventory import save_snapshot
from tests.plan.synthetic import inventory


def save(db_url: str, tenants: int = 3) -> int:
    engine = make_engine(db_url)
    try:
        return save_snapshot(session_factory(engine), "legacy", inventory(tenants),
                             {"tenants": []}, 0)
    finally:
        engine.dispose()


@pytest.fixture
def snapshot_url(db_url: str) -> str:
    save(db_url)
    return db_url


def write_config(tmp_path: Path, extra: str = "", **replace: str) -> Path:
    text = SAMPLE.replace("state/passwords.yaml", str(tmp_path / "passwords.yaml"))
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "migrator.yaml"
    path.write_text(text + extra)
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)
