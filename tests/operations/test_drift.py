"""Drift: the source read again against the planned snapshot (new, changed, gone; a tenant
gone is one drift; what changes by itself is not drift)."""

from __future__ import annotations

from migrator.operations.drift import compare
from migrator.store.inventory import Item

P, C = "p-physics", "p-chemistry"


def snapshot() -> list[Item]:
    return [
        Item("project", P, P, "physics", {"id": P, "name": "physics"}),
        Item("project", C, C, "chemistry", {"id": C, "name": "chemistry"}),
        Item("image", "img", P, "physics-x86", {"id": "img", "checksum": "a" * 32,
                                                "size": 10, "os_distro": "centos",
                                                "updated_at": "2026-11-01"}, 10, "a" * 32),
        Item("volume", "vol", P, "data", {"id": "vol", "size": 1, "status": "available"}, 1),
        Item("network", "net", C, "chem-net", {"id": "net", "name": "chem-net"}),
        Item("flavor", "f1", None, "m1", {"id": "f1"}),
    ]


def test_new_changed_and_gone() -> None:
    before = snapshot()
    after = [i for i in snapshot() if i.tenant != C]  # chemistry deleted
    image = next(i for i in after if i.kind == "image")
    image.attributes.update(checksum="b" * 32, os_distro="debian", updated_at="2026-12-01")
    image.content_hash = "b" * 32
    volume = next(i for i in after if i.kind == "volume")
    volume.attributes["status"] = "in-use"  # attached since: not drift
    after.append(Item("volume", "late", P, "late-volume", {"id": "late", "size": 5}, 5))
    drifts = compare(before, after, {P, C})
    assert [(d.tenant_id, d.kind, d.source_id, d.change, d.detail) for d in drifts] == [
        (P, "image", "img", "changed", "image physics-x86 changed on the source: checksum "
         f"{'a' * 32} -> {'b' * 32}; os_distro centos -> debian"),
        (C, "project", C, "gone", "tenant chemistry is gone from the source"),
        (P, "volume", "late", "new", "volume late-volume appeared on the source after "
         "planning"),
    ]


def test_nothing_changed_is_no_drift_and_other_tenants_do_not_count() -> None:
    assert compare(snapshot(), snapshot(), {P, C}) == []
    after = [*snapshot(), Item("volume", "x", "p-biology", "x", {"id": "x"})]
    assert compare(snapshot(), after, {P, C}) == []
