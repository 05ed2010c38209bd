"""The id map of ``audit`` and ``report`` lists the volumes a server step carried (from its
checkpoint and spec) after the server, on SQLite and PostgreSQL: with their bytes and
checksums, under ``--kind volume`` too, and their names counted in the table's widths."""

from __future__ import annotations

from sqlalchemy import update

from migrator.engine.runs import StepSpec, create_run
from migrator.engine.steps import STEPS, write_transaction
from migrator.store.audit import AuditFilter, column_widths, iter_id_map
from migrator.store.db import make_engine, session_factory

LONG_NAME = "physics-vm0-a-data-volume-with-a-long-name"


def test_a_servers_volumes_follow_it_in_the_id_map(url: str) -> None:
    engine = make_engine(url)
    try:
        factory = session_factory(engine)
        lookup = {"volumes": [
            {"source_id": "v-root", "name": "physics-vm0-root", "boot": True, "attrs": {}},
            {"source_id": "v-data", "name": LONG_NAME, "boot": False, "attrs": {}}]}
        run_id = create_run(factory, "wave", [
            StepSpec("server:s", "server", {"attrs": {}, "lookup": lookup}, source_id="s",
                     tenant="physics", name="physics-vm0"),
            StepSpec("volume:v", "volume", {"attrs": {}}, source_id="v", tenant="physics",
                     name="physics-vol")], [])
        copied = {"bytes": 1024, "md5": "m" * 32, "sha512": "s" * 128}
        checkpoint = {"target_id": "S", "volumes": {
            "v-root": {"target_volume_id": "T-root", "verified": True, "copied": copied},
            "v-data": {"target_volume_id": "T-data", "verified": True}}}
        with write_transaction(factory) as conn:
            conn.execute(update(STEPS).where(STEPS.c.key == "server:s")
                         .values(state="done", checkpoint=checkpoint))
        with engine.connect() as conn:
            rows = list(iter_id_map(conn, AuditFilter([run_id])))
            volumes = list(iter_id_map(conn, AuditFilter([run_id], kind="volume")))
            servers = list(iter_id_map(conn, AuditFilter([run_id], kind="server")))
            widths = column_widths(conn, AuditFilter([run_id]))
            server_widths = column_widths(conn, AuditFilter([run_id], kind="server"))
            volume_widths = column_widths(conn, AuditFilter([run_id], kind="volume"))
        assert [(r.kind, r.name, r.source_id, r.target_id, r.state) for r in rows] == [
            ("server", "physics-vm0", "s", None, "done"),
            ("volume", "physics-vm0-root", "v-root", "T-root", "done"),
            ("volume", LONG_NAME, "v-data", "T-data", "done"),
            ("volume", "physics-vol", "v", None, "pending")]
        assert (rows[1].data.bytes, rows[1].data.md5, rows[1].data.sha512) == (
            1024, "m" * 32, "s" * 128)
        assert rows[2].data.bytes is None
        assert [r.source_id for r in volumes] == ["v-root", "v-data", "v"]
        assert [r.source_id for r in servers] == ["s"]
        assert widths.name == len(LONG_NAME)
        assert server_widths.name == len("physics-vm0")
        # Under --kind volume the carried ones count (the volume step has no target yet).
        assert (volume_widths.name, volume_widths.source_id, volume_widths.target_id) == (
            len(LONG_NAME), len("v-root"), len("T-root"))
    finally:
        engine.dispose()
