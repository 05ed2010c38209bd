"""``discover``: read a source cloud and store an inventory snapshot in the state database.

Nothing is written unless the whole read succeeded: a wrong cloud name (ConfigError), a dead
endpoint or a failing API (CloudError) leave the database as it was. What the credentials
could not read is not an error: it is listed per tenant in the result and in the snapshot's
``selection`` JSON (``unreadable``).

Per-tenant credentials come from the configuration file (``source.tenant_credentials``: tenant
name or id -> clouds.yaml name); ``tenant_credentials`` given here wins over the file.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.bulk_gc import relaxed_gc
from migrator.clouds.connection import open_cloud
from migrator.clouds.source import DEFAULT_WORKERS, LegacySource, Unreadable
from migrator.config import DEFAULT_CONFIG, load_config
from migrator.errors import ConfigError
from migrator.operations.context import database_errors, open_state
from migrator.store.db import session_factory
from migrator.store.inventory import get_snapshot, latest_snapshot, load_items, save_snapshot

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DiscoverResult:
    snapshot_id: int
    cloud: str
    mode: str  # admin | limited
    content_hash: str
    api_calls: int
    retries: int
    elapsed_s: float
    tenants: list[str]  # names of the tenants read
    counts: dict[str, int]  # items per kind
    per_tenant: dict[str, int]  # items per tenant name ("-": cloud-wide)
    unreadable: list[Unreadable] = field(default_factory=list)

    @property
    def items(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id, "cloud": self.cloud, "mode": self.mode,
            "content_hash": self.content_hash, "api_calls": self.api_calls,
            "retries": self.retries, "elapsed_s": round(self.elapsed_s, 3),
            "tenants": self.tenants, "items": self.items, "counts": self.counts,
            "per_tenant": self.per_tenant,
            "unreadable": [u.as_dict() for u in self.unreadable],
        }


@dataclass(frozen=True)
class SourceSettings:
    cloud: str | None
    tenant_credentials: dict[str, str]
    lean_reads: bool = True  # source.lean_reads: discovery's reads off the SDK's session


def source_settings(config: str | Path | None) -> SourceSettings:
    """The source part of the configuration file: ``config``, else ./migrator.yaml when there
    is one (as ``plan`` reads it), else nothing (``--cloud`` must then name the source)."""
    if config is None:
        if not Path(DEFAULT_CONFIG).is_file():
            return SourceSettings(None, {})
        config = DEFAULT_CONFIG
    source = load_config(config).source
    return SourceSettings(source.cloud, dict(source.tenant_credentials), source.lean_reads)


def _known_images(factory: Any, cloud: str) -> dict[str, dict[str, Any]]:
    """Image id -> attributes in the latest snapshot of ``cloud``: what their bytes were
    read to be is kept for the images whose bytes did not change."""
    previous = latest_snapshot(factory, cloud)
    if previous is None:
        return {}
    return {item.source_id: item.attributes
            for item in load_items(factory, previous.id, kinds=("image",))}


@relaxed_gc()
def discover(url: str, cloud: str | None, *, tenants: Sequence[str] | None = None,
             config: str | Path | None = None, clouds_yaml: str | Path | None = None,
             tenant_credentials: Mapping[str, str] | None = None,
             workers: int = DEFAULT_WORKERS, progress: Progress | None = None
             ) -> DiscoverResult:
    """Read ``cloud`` (a clouds.yaml name; default: the configuration's ``source.cloud``)
    and store a snapshot. ``config``: migrator.yaml (default: ./migrator.yaml when present).
    ``tenants`` (names or ids) restricts the read."""
    started = time.monotonic()
    settings = source_settings(config)
    cloud = cloud or settings.cloud
    if not cloud:
        raise ConfigError(f"no source cloud: give --cloud, or source.cloud in {DEFAULT_CONFIG} "
                          "(there is none here: create one with 'migrator init', or give "
                          "--config)")
    creds = {**settings.tenant_credentials, **dict(tenant_credentials or {})}
    say = progress or (lambda message: None)
    with open_state(url) as engine:  # the schema is checked before any cloud call
        factory = session_factory(engine)
        handle = open_cloud(cloud, config_file=clouds_yaml, role="source")
        handle.lean_reads = settings.lean_reads
        try:
            say(f"connected to {cloud} ({handle.auth_url})")
            source = LegacySource(handle, tenant_credentials=creds, workers=workers,
                                  progress=say, known_images=_known_images(factory, cloud))
            result = source.read(list(tenants) if tenants else None)
        finally:
            handle.close()
        names = {t.id: t.name for t in result.tenants}
        project_names = {i.source_id: i.name or i.source_id for i in result.items
                         if i.kind == "project"}
        selection = {
            "requested": list(tenants or []),
            "tenants": sorted(names),
            "tenant_names": [names[t] for t in sorted(names)],
            "mode": result.mode,
            "tenant_credentials": dict(sorted(creds.items())),
            "unreadable": [u.as_dict() for u in result.unreadable],
            "retries": handle.counter.retries,
        }
        api_calls = handle.calls
        with database_errors(url):
            snapshot_id = save_snapshot(factory, cloud, result.items, selection, api_calls)
        info = get_snapshot(factory, snapshot_id)
    per_tenant: Counter[str] = Counter(
        (project_names.get(i.tenant, i.tenant) if i.tenant else "-") for i in result.items)
    say(f"snapshot {snapshot_id}: {info.items} items, {api_calls} API calls")
    return DiscoverResult(
        snapshot_id=snapshot_id, cloud=cloud, mode=result.mode,
        content_hash=info.content_hash or "", api_calls=api_calls,
        retries=handle.counter.retries, elapsed_s=time.monotonic() - started,
        tenants=[t.name for t in result.tenants], counts=info.counts,
        per_tenant=dict(sorted(per_tenant.items())), unreadable=list(result.unreadable))
