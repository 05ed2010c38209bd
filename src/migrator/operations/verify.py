"""``verify``: what a run migrated, read again on the target and compared with the plan; the
source read again for drift; the result recorded as a verification of the run.

The expectation is each step's planned, translated representation (its spec, stored with the
step), references resolved through the id map: exactly what the handler verified when the step
completed, asked again later. The target is read with list calls (clouds/target_listing.py:
one listing per kind; quotas and keypairs per owner, image members per image), and the
handlers' own read-back checks compare (fields, rules, marks, fingerprints, image sizes,
checksums and properties); volumes are compared here (size, type, bootable, metadata,
project, mark). ``deep`` downloads every migrated image's bytes from the target and hashes
them (md5 against the legacy checksum, sha512 against what was sent).

Per tenant and kind each done step is ``match``, ``differs`` or ``missing`` (steps not done
are ``not-migrated``, skipped ones ``skipped``); drift on the source is reported beside, and
does not make the run's verification fail.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from migrator.clouds.target import ListedTarget
from migrator.engine.handlers import StepContext
from migrator.engine.steps import StepSnapshot
from migrator.errors import (
    CloudError,
    ConfigError,
    MigratorError,
    NotFoundError,
    StepFailedError,
    TargetGoneError,
)
from migrator.operations.context import database_errors, open_state
from migrator.operations.drift import Drift, compare, read_source
from migrator.plan.model import KIND_ORDER
from migrator.services import Services
from migrator.store import plans as plan_rows
from migrator.store.audit import CARRIED
from migrator.store.db import session_factory
from migrator.store.inventory import load_items, snapshot_with_hash
from migrator.store.steps import step_snapshots
from migrator.store.verifications import record_verification

RESULTS = ("match", "differs", "missing", "error", "not-migrated", "skipped")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    """A migrated resource that does not match, or a drift of the source."""

    tenant: str | None
    kind: str
    name: str | None
    source_id: str | None
    target_id: str | None
    result: str  # differs | missing | error | drift-new | drift-changed | drift-gone
    detail: str


@dataclass
class TenantResult:
    tenant: str | None
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> result -> n
    drift: int = 0

    def count(self, result: str) -> int:
        return sum(c.get(result, 0) for c in self.kinds.values())


@dataclass
class VerifyReport:
    run: str
    verification_id: int
    tenant: str | None
    deep: bool
    started_at: datetime
    finished_at: datetime
    tenants: list[TenantResult]
    findings: list[Finding]
    drift_checked: bool
    drift_note: str  # why drift was not checked, or what was read
    target_calls: int = 0
    source_calls: int = 0
    deep_bytes: int = 0

    @property
    def outcome(self) -> str:
        return "differences" if any(
            f.result in ("differs", "missing", "error") for f in self.findings) else "match"

    def totals(self) -> dict[str, int]:
        return {r: sum(t.count(r) for t in self.tenants) for r in RESULTS}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        data["outcome"] = self.outcome
        data["totals"] = self.totals()
        for tenant_data, tenant in zip(data["tenants"], self.tenants, strict=True):
            tenant_data["totals"] = {r: tenant.count(r) for r in RESULTS}
        return data


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    source_cloud: str | None
    target_cloud: str | None
    inventory_hash: str | None


def verify_run(url: str, run: str, *, tenant: str | None = None, deep: bool = False,
               drift: bool = True, clouds_yaml: str | Path | None = None,
               target: Any = None, now: datetime | None = None) -> VerifyReport:
    """Verify run ``run`` (restricted to ``tenant``) and record the result. ``target`` (a
    connection or CloudHandle of the target, for tests) replaces opening the plan's target
    cloud; ``drift=False`` does not read the source."""
    started = now or datetime.now(UTC)
    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        with engine.connect() as conn:
            info = _run_info(conn, run)
            steps = step_snapshots(conn, info.id, tenant)
        if tenant is not None and not steps:
            raise NotFoundError(f"no steps for tenant {tenant!r} in run {info.name!r}")
        handle, opened = target, False
        if handle is None:
            if not info.target_cloud:
                raise ConfigError(f"run {info.name!r} has no plan naming its target cloud")
            from migrator.clouds.connection import open_cloud

            handle = open_cloud(info.target_cloud, config_file=clouds_yaml, role="target")
            opened = True
        try:
            listed = ListedTarget(handle, name=info.target_cloud or "target",
                                  source_cloud=info.source_cloud or "legacy")
            checker = _Checker(factory, info, listed, deep)
            results: dict[str | None, TenantResult] = {}
            findings: list[Finding] = []
            for step in steps:
                result, finding = checker.check(step)
                bucket = results.setdefault(step.tenant, TenantResult(step.tenant))
                counts = bucket.kinds.setdefault(step.kind, {})
                counts[result] = counts.get(result, 0) + 1
                if finding is not None:
                    findings.append(finding)
                for result, finding in checker.carried(step):
                    counts = bucket.kinds.setdefault("volume", {})
                    counts[result] = counts.get(result, 0) + 1
                    if finding is not None:
                        findings.append(finding)
            target_calls = int(getattr(handle, "calls", 0) or 0)
        finally:
            if opened:
                handle.close()
        drifts: list[Drift] = []
        drift_note, source_calls = "not checked (--no-drift)", 0
        if drift:
            drifts, drift_note, source_calls = _drift(factory, engine, info, steps,
                                                      clouds_yaml)
        names = _tenant_names(steps)
        for d in drifts:
            name = names.get(d.tenant_id or "", d.tenant_id)
            results.setdefault(name, TenantResult(name)).drift += 1
            findings.append(Finding(name, d.kind, d.name, d.source_id, None,
                                    f"drift-{d.change}", d.detail))
        ordered = [results[k] for k in sorted(results, key=lambda t: (t is None, t or ""))]
        for r in ordered:
            r.kinds = dict(sorted(r.kinds.items(), key=lambda kv: KIND_ORDER.get(kv[0], 99)))
        report = VerifyReport(info.name, 0, tenant, deep, started, datetime.now(UTC),
                              ordered, findings, drift, drift_note, target_calls,
                              source_calls, checker.deep_bytes)
        with engine.begin() as conn:
            report.verification_id = record_verification(
                conn, run_id=info.id, tenant=tenant, deep=deep, outcome=report.outcome,
                started_at=report.started_at, finished_at=report.finished_at,
                summary={"tenants": [asdict(t) for t in ordered], "totals": report.totals(),
                         "drift_checked": drift, "drift_note": drift_note},
                findings={"items": [asdict(f) for f in findings]})
    return report


def _run_info(conn: Connection, name: str) -> RunInfo:
    row = plan_rows.run_plan(conn, name)
    if row is None:
        raise NotFoundError(f"no run named {name!r} in the state database")
    return RunInfo(row.run_id, row.run_name, row.source_cloud, row.target_cloud,
                   row.inventory_hash)


def _tenant_names(steps: Iterable[StepSnapshot]) -> dict[str, str | None]:
    """Legacy project id -> tenant name, from the run's project steps."""
    return {str(s.source_id): s.tenant for s in steps if s.kind == "project" and s.source_id}


class _Checker:
    """One step compared with the target (the handlers' checks over the listed target)."""

    def __init__(self, factory: Any, info: RunInfo, listed: ListedTarget, deep: bool) -> None:
        from migrator.handlers import handlers

        self.factory = factory
        self.info = info
        self.listed = listed
        self.deep = deep
        self.deep_bytes = 0
        self.handlers = handlers()
        self.stop = threading.Event()
        self.services = Services(target=listed)
        self._types: dict[str, str] | None = None

    def check(self, step: StepSnapshot) -> tuple[str, Finding | None]:
        if step.state == "skipped":
            return "skipped", None
        if step.state != "done":
            return "not-migrated", None
        target_id = _target_id(step)

        def finding(result: str, detail: str) -> Finding:
            return Finding(step.tenant, step.kind, step.name, step.source_id, target_id,
                           result, detail)

        if not target_id:
            return "missing", finding("missing", "the step recorded no target id")
        ctx = StepContext(self.factory, step, self.stop, self.info.name,
                          services=self.services)
        try:
            problems = self._problems(ctx, step, target_id)
        except NotFoundError as exc:
            return "missing", finding("missing", exc.message)
        except TargetGoneError as exc:
            return "missing", finding("missing", exc.message)
        except StepFailedError as exc:
            return "differs", finding("differs", exc.message)
        except (CloudError, MigratorError) as exc:
            return "error", finding("error", exc.message)
        if problems:
            return "differs", finding("differs", "; ".join(problems))
        return "match", None

    def _problems(self, ctx: StepContext, step: StepSnapshot, target_id: str) -> list[str]:
        from migrator.handlers.base import ResourceHandler, resolve_attrs, source_id_of
        from migrator.handlers.identity import QuotaHandler
        from migrator.handlers.image import _expected, image_differences

        handler = self.handlers.get(step.kind)
        if step.kind == "image":
            record = self.listed.get_image_record(target_id)
            if record is None:
                raise NotFoundError(f"{self.listed.name}: image {target_id} does not exist")
            problems = image_differences(record, resolve_attrs(ctx, step), _expected(step),
                                         step.checkpoint.get("sha512"), source_id_of(step))
            if self.deep:
                problems += self._image_bytes(step, target_id)
            return problems
        if step.kind == "volume":
            return self._volume(source_id_of(step), target_id, resolve_attrs(ctx, step))
        if isinstance(handler, ResourceHandler) and not isinstance(handler, QuotaHandler):
            return handler.differences(self.listed, step, target_id, resolve_attrs(ctx, step))
        if handler is None:
            raise ConfigError(f"step {step.key!r}: no handler for kind {step.kind!r}")
        handler.verify(ctx, step)  # quotas, image members: raises StepFailedError
        return []

    # -- images: the bytes ---------------------------------------------------------------
    def _image_bytes(self, step: StepSnapshot, target_id: str) -> list[str]:
        from migrator.handlers.image import _expected
        from migrator.transfer.glance_io import GlanceV2Reader
        from migrator.transfer.hashing import StreamHasher

        size, md5 = _expected(step)
        stream = GlanceV2Reader(self.listed.conn).open(target_id, chunk_size=CHUNK,
                                                       timeout=self.listed.timeout)
        hasher = StreamHasher()
        try:
            for chunk in stream.chunks:
                hasher.update(chunk)
        finally:
            stream.close()
        got = hasher.finish()
        self.deep_bytes += got.size
        out = []
        if size is not None and got.size != size:
            out.append(f"bytes on the target: {got.size}, the legacy image has {size}")
        if md5 and got.md5 != md5:
            out.append(f"bytes on the target: md5 {got.md5}, the legacy checksum is {md5}")
        sent = step.checkpoint.get("sha512")
        if sent and got.sha512 != str(sent).lower():
            out.append(f"bytes on the target: sha512 {got.sha512[:16]}..., "
                       f"{str(sent)[:16]}... was sent")
        return out

    # -- volumes a server step moved ----------------------------------------------------
    def carried(self, step: StepSnapshot) -> list[tuple[str, Finding | None]]:
        """The volumes a server step moved inside its cutover, each compared like a volume
        step's (planned attributes from the server's spec, the target id from its
        checkpoint)."""
        from migrator.handlers.base import resolve_attrs

        volumes = list(((step.spec.get("lookup") or {}).get("volumes") or []) if
                       step.kind in CARRIED else [])
        if not volumes or step.state != "done":
            result = "skipped" if step.state == "skipped" else "not-migrated"
            return [(result, None)] * len(volumes)
        copies = step.checkpoint.get("volumes") or {}
        ctx = StepContext(self.factory, step, self.stop, self.info.name,
                          services=self.services)
        out: list[tuple[str, Finding | None]] = []
        try:
            attrs = resolve_attrs(ctx, step)
        except StepFailedError as exc:
            return [("error", Finding(step.tenant, "volume", v.get("name"),
                                      str(v.get("source_id")), None, "error", exc.message))
                    for v in volumes]
        for index, vol in enumerate(volumes):
            vid = str(vol.get("source_id"))
            target = (copies.get(vid) or {}).get("target_volume_id")

            def finding(result: str, detail: str, vol: Mapping[str, Any] = vol,
                        vid: str = vid, target: Any = target) -> Finding:
                return Finding(step.tenant, "volume", vol.get("name"), vid,
                               str(target) if target else None, result,
                               f"{detail} (moved by server {step.name})")

            if not target:
                out.append(("missing", finding("missing", "the server step recorded no "
                                                          "target volume")))
                continue
            planned = {**(vol.get("attrs") or {}), **(attrs.get(f"volume{index}") or {}),
                       "project_id": attrs.get("project_id")}
            try:
                problems = self._volume(vid, str(target), planned)
            except NotFoundError as exc:
                out.append(("missing", finding("missing", exc.message)))
                continue
            except (CloudError, MigratorError) as exc:
                out.append(("error", finding("error", exc.message)))
                continue
            out.append(("differs", finding("differs", "; ".join(problems))) if problems
                       else ("match", None))
        return out

    # -- volumes ---------------------------------------------------------------------------
    def _volume(self, source_id: str, target_id: str, attrs: Mapping[str, Any]
                ) -> list[str]:
        from migrator.handlers.base import same_value

        vol = self.listed.get_volume_record(target_id)
        if vol is None:
            raise NotFoundError(f"{self.listed.name}: volume {target_id} does not exist")
        out = []
        if vol.get("status") not in ("available", "in-use"):
            out.append(f"status {vol.get('status')}")
        if attrs.get("size") is not None and int(vol.get("size") or 0) != int(attrs["size"]):
            out.append(f"size {vol.get('size')} GiB, planned {attrs['size']}")
        wanted_type = attrs.get("volume_type")
        if wanted_type and not self._same_type(str(wanted_type), vol.get("volume_type")):
            out.append(f"type {vol.get('volume_type')!r}, planned {wanted_type!r}")
        if "bootable" in attrs and not same_value(attrs["bootable"], vol.get("bootable")):
            out.append(f"bootable {vol.get('bootable')}, planned {attrs['bootable']}")
        meta = vol.get("metadata") or {}
        wrong = sorted(k for k, v in (attrs.get("metadata") or {}).items()
                       if str(meta.get(k)) != str(v))
        if wrong:
            out.append(f"metadata differs in {', '.join(wrong)}")
        project = vol.get("os-vol-tenant-attr:tenant_id")
        if attrs.get("project_id") and project and project != attrs["project_id"]:
            out.append(f"project {project}, planned {attrs['project_id']}")
        if meta.get("migrator_source_id") != source_id:
            out.append(f"source id mark: wanted {source_id!r}, target has "
                       f"{meta.get('migrator_source_id')!r}")
        return out

    def _same_type(self, wanted: str, actual: Any) -> bool:
        if actual == wanted:
            return True
        if self._types is None:
            self._types = {}
            for vtype in self.listed.list_volume_types():
                self._types[str(vtype.get("id"))] = str(vtype.get("name"))
                self._types[str(vtype.get("name"))] = str(vtype.get("name"))
        return self._types.get(wanted) is not None and self._types.get(wanted) == \
            self._types.get(str(actual))


def _target_id(step: StepSnapshot) -> str | None:
    cp = step.checkpoint
    found = cp.get("target_id") or (cp.get("copy") or {}).get("target_volume_id")
    return str(found) if found else None


def _drift(factory: Any, engine: Any, info: RunInfo, steps: list[StepSnapshot],
           clouds_yaml: str | Path | None) -> tuple[list[Drift], str, int]:
    """The source read again for the run's tenants and compared with the planned snapshot."""
    if not info.source_cloud or not info.inventory_hash:
        return [], "not checked: the run has no plan naming its source inventory", 0
    with engine.connect() as conn:
        snapshot = snapshot_with_hash(conn, info.source_cloud, info.inventory_hash)
    if snapshot is None:
        return [], (f"not checked: the inventory of {info.source_cloud} the plan was made "
                    "from is no longer in the state database"), 0
    snapshot_id, selection = snapshot
    tenant_ids = sorted(_tenant_names(steps))
    if not tenant_ids:
        return [], "not checked: the run has no project steps naming its tenants", 0
    before = list(load_items(factory, snapshot_id, tenants=tenant_ids))
    after, calls = read_source(info.source_cloud, tenant_ids,
                               selection.get("tenant_credentials") or {}, clouds_yaml)
    drifts = compare(before, after, set(tenant_ids))
    kinds = Counter(d.change for d in drifts)
    note = (f"{info.source_cloud} read again ({calls} calls) and compared with snapshot "
            f"{snapshot_id}: " + (", ".join(f"{n} {c}" for c, n in sorted(kinds.items()))
                                  or "no drift"))
    return drifts, note, calls


def latest_run_name(url: str) -> str:
    """The most recently created run (``verify`` and ``report`` without ``--run``)."""
    with open_state(url) as engine, database_errors(url), engine.connect() as conn:
        name = plan_rows.latest_run_name(conn)
    if name is None:
        raise NotFoundError("no runs in the state database yet")
    return name
