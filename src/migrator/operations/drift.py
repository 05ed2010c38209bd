"""Drift: how the source changed since the inventory a plan was made from.

The source is read again the way discovery read it (``LegacySource``: list calls, the same
per-tenant credentials, recorded in the snapshot's selection) for the tenants of a run, and
compared item by item with that snapshot: a resource that is new (a volume created after
planning), changed (an image whose bytes or properties changed) or gone (a tenant deleted).
Drift is not a failure of the run: it is what a later wave or a re-plan must pick up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.plan.model import KINDS
from migrator.store.inventory import VOLATILE, Item

DRIFT_KINDS = frozenset(KINDS)


@dataclass(frozen=True)
class Drift:
    tenant_id: str | None
    kind: str
    source_id: str
    name: str | None
    change: str  # new | changed | gone
    detail: str


def compare(before: Iterable[Item], after: Iterable[Item], tenant_ids: set[str]
            ) -> list[Drift]:
    """Items of ``tenant_ids`` (kinds a plan migrates) new, changed or gone between two reads;
    a tenant whose project is gone is one drift, not one per resource."""
    def keyed(items: Iterable[Item]) -> dict[tuple[str, str], Item]:
        return {(i.kind, i.source_id): i for i in items
                if i.kind in DRIFT_KINDS and i.tenant in tenant_ids}

    old, new = keyed(before), keyed(after)
    gone_tenants = {sid for (kind, sid) in old if kind == "project" and ("project", sid) not in new}
    out: list[Drift] = []
    for key in sorted(set(old) | set(new)):
        was, now = old.get(key), new.get(key)
        item = now or was
        assert item is not None
        if was is None:
            out.append(Drift(item.tenant, item.kind, item.source_id, item.name, "new",
                             f"{item.kind} {item.name or item.source_id} appeared on the source "
                             "after planning"))
        elif now is None:
            if item.tenant in gone_tenants and item.kind != "project":
                continue
            what = "tenant" if item.kind == "project" else item.kind
            out.append(Drift(item.tenant, item.kind, item.source_id, item.name, "gone",
                             f"{what} {item.name or item.source_id} is gone from the source"))
        else:
            changed = changed_fields(was, now)
            if changed:
                out.append(Drift(item.tenant, item.kind, item.source_id, item.name, "changed",
                                 f"{item.kind} {item.name or item.source_id} changed on the "
                                 f"source: {'; '.join(changed)}"))
    return out


def changed_fields(was: Item, now: Item) -> list[str]:
    out = []
    if was.size_bytes != now.size_bytes:
        out.append(f"size {was.size_bytes} -> {now.size_bytes}")
    if was.content_hash != now.content_hash:
        out.append(f"checksum {was.content_hash} -> {now.content_hash}")
    a, b = _stable(was.attributes), _stable(now.attributes)
    for key in sorted(set(a) | set(b)):
        if key in ("size", "checksum") or a.get(key) == b.get(key):
            continue
        out.append(f"{key} {_short(a.get(key))} -> {_short(b.get(key))}")
    return out


def _stable(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in VOLATILE}


def _short(value: Any) -> str:
    text = "(none)" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_source(cloud: str, tenant_ids: Sequence[str], tenant_credentials: Mapping[str, str],
                clouds_yaml: str | Path | None) -> tuple[list[Item], int]:
    """The source's items of ``tenant_ids`` as discovery reads them, and the calls made."""
    from migrator.clouds.connection import open_cloud
    from migrator.clouds.source import LegacySource

    handle = open_cloud(cloud, config_file=clouds_yaml, role="source")
    try:
        result = LegacySource(handle, tenant_credentials=dict(tenant_credentials)).read(
            list(tenant_ids))
        return result.items, handle.calls
    finally:
        handle.close()
