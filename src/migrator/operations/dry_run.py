"""The deep dry run of ``execute PLAN --dry-run``: every read and check a real run would make,
and nothing written on either cloud.

:func:`deep_checks` adds to the plan checks of operations/execute.py (file, freshness, names,
mappings, network quotas):

- credentials and endpoints: a token from each cloud, the services of its catalog against
  what the plan's kinds need;
- permissions per step kind on the target, probed with read calls that only an admin may
  make (another project's quota sets, another user's keypairs, the role assignments, the
  users), and the role names of the token for what no read can show (creating in another
  project); on the source, the images and volumes the plan copies, read one by one (an
  attached volume needs ``transfer.allow_force_upload``);
- quotas and free capacity per tenant: what the plan consumes (volumes, gigabytes, images,
  networks, subnets, routers, ports, security groups and rules, keypairs) against the
  limits the run will set (the plan's quota steps) or the target's own (its defaults for a
  new project; limits and usage read for a project that exists);
- volume types and flavors the plan maps to, in the target's lists; name clashes of users;
- image formats and properties after translation: a label that contradicts the bytes read
  at discovery (refused by a Glance that checks formats), values outside the enums of the
  target's image schema;
- the bytes to copy and an estimated duration, from the configured bandwidth or the rate
  measured in the latest run that moved bytes (and that run's time per step kind).

Its findings are recorded as a run of kind ``dry_run`` (no steps, ``runs.dry_run`` set, the
findings in its options and its status event), never mixed with real runs.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from migrator.errors import ConfigError, MigratorError
from migrator.plan.model import Plan, PlanStep
from migrator.services import Services
from migrator.store.run_kinds import DRY_RUN, Measured, latest_measured, taken_names

GIB = 1 << 30
ERROR, OK = "error", "ok"
# Seconds per step of a kind when no earlier run measured it: a few API calls each on a
# real cloud; data kinds add their copy (bytes over the rate).
DEFAULT_STEP_SECONDS = 1.0
DATA_KINDS = ("image", "volume", "server")

# Which catalog service each kind needs (the target's, and the source's for data kinds).
TARGET_SERVICES = {
    "project": "identity", "user": "identity", "role_assignment": "identity",
    "network": "network", "subnet": "network", "router": "network",
    "router_interface": "network", "security_group": "network",
    "security_group_rule": "network", "keypair": "compute", "image": "image",
    "image_member": "image", "volume": "block-storage", "server": "compute",
}
FAKE_PROJECT = "0" * 32


@dataclass(frozen=True)
class Finding:
    tenant: str | None  # None: the whole plan
    check: str
    result: str  # error (the run would fail), warning, ok
    message: str


@dataclass(frozen=True)
class Estimate:
    bytes: int
    images: int
    volumes: int
    steps: int
    seconds: float
    transfer_seconds: float
    steps_seconds: float
    rate: float | None  # bytes/s
    basis: str
    # Seconds per step of each kind the estimate assumed (measured earlier or the default).
    step_times: dict[str, float] = field(default_factory=dict)


@dataclass
class DeepReport:
    findings: list[Finding] = field(default_factory=list)
    estimate: Estimate | None = None
    per_tenant_bytes: dict[str, int] = field(default_factory=dict)
    target_calls: int = 0
    source_calls: int = 0
    run_name: str | None = None

    @property
    def ok(self) -> bool:
        return not any(f.result == ERROR for f in self.findings)

    def add(self, tenant: str | None, check: str, result: str, message: str) -> None:
        self.findings.append(Finding(tenant, check, result, message))

    def as_dict(self) -> dict[str, Any]:
        tenants: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for f in self.findings:
            tenants[f.tenant or "-"].append(asdict(f))
        return {"ok": self.ok, "run": self.run_name,
                "estimate": asdict(self.estimate) if self.estimate else None,
                "per_tenant_bytes": self.per_tenant_bytes,
                "calls": {"target": self.target_calls, "source": self.source_calls},
                "tenants": dict(tenants)}


def deep_checks(plan: Plan, services: Services, settings: Any,
                workers: int, bandwidth: int | None,
                factory: sessionmaker[Session] | None,
                open_source: Callable[[], Any] | None = None) -> DeepReport:
    """Run every check (see the module docstring) and return the findings."""

    report = DeepReport()
    tc = services.target
    if tc is None:
        raise ConfigError("the dry run needs the target cloud, but it was given none")
    with tc.counting() as counted:
        for check in (_target_credentials, _permissions, _capacity, _volume_types,
                      _flavors, _images, _user_clashes):
            try:
                check(report, plan, tc)
            except MigratorError as exc:
                report.add(None, check.__name__.strip("_").replace("_", " "), ERROR,
                           f"the check could not read the target: {exc}")
    report.target_calls = counted["calls"]
    _source_checks(report, plan, services.source, open_source, settings)
    measured = latest_measured(factory) if factory is not None else None
    report.estimate = estimate(plan, bandwidth, measured, workers,
                               getattr(settings, "parallel_transfers", 4))
    per_gib = measured.bytes_per_volume_gib if measured is not None else None
    report.per_tenant_bytes = dict(sorted(_bytes_per_tenant(plan, per_gib).items()))
    return report


# -- credentials and endpoints ----------------------------------------------------------------


def _target_credentials(report: DeepReport, plan: Plan, tc: Any) -> None:
    from migrator.clouds.target_base import catalog_types

    services = catalog_types(tc.conn)
    kinds = Counter(s.kind for s in plan.steps)
    needed = {TARGET_SERVICES[k] for k in kinds if k in TARGET_SERVICES}
    if any(k == "quota" for k in kinds):
        needed |= {s.source_id.partition(":")[0].replace("volume", "block-storage")
                   for s in plan.steps if s.kind == "quota"}
    aliases = {"block-storage": {"block-storage", "volumev3", "volumev2", "volume"}}
    missing = sorted(n for n in needed if not (aliases.get(n, {n}) & services))
    if missing:
        report.add(None, "endpoints", ERROR, f"target {tc.name}: the catalog has no "
                   f"{', '.join(missing)} service, which the plan's steps need")
    else:
        report.add(None, "credentials", OK, f"target {tc.name}: token issued; catalog has "
                   f"{', '.join(sorted(needed))}")


def _token_roles(tc: Any) -> set[str]:
    session = tc.conn.session
    access = session.auth.get_access(session)
    return {str(r) for r in (access.role_names or [])}


# Read calls only an admin (or a reader of other projects) may make, per kind they stand for.
def _probes(tc: Any) -> list[tuple[tuple[str, ...], str, Callable[[], Any]]]:
    return [
        (("project",), "identity:list_projects",
         lambda: tc.request("identity", "GET", "/projects", op="probe", what="projects",
                            params={"name": f"migrator-probe-{uuid.uuid4().hex[:8]}"})),
        (("user",), "identity:list_users",
         lambda: tc.request("identity", "GET", "/users", op="probe", what="users",
                            params={"name": f"migrator-probe-{uuid.uuid4().hex[:8]}"})),
        (("role_assignment",), "identity:list_role_assignments",
         lambda: tc.request("identity", "GET", "/role_assignments", op="probe",
                            what="role assignments",
                            params={"scope.project.id": FAKE_PROJECT})),
        (("quota",), "os_compute_api:os-quota-sets:show (another project)",
         lambda: tc.request("compute", "GET", f"/os-quota-sets/{FAKE_PROJECT}", op="probe",
                            what="compute quotas")),
        (("quota", "volume"), "volume_extension:quotas:show (another project)",
         lambda: tc.request("block_storage", "GET", f"/os-quota-sets/{FAKE_PROJECT}",
                            op="probe", what="volume quotas")),
        (("quota", "network"), "get_quota (another project)",
         lambda: tc.request("network", "GET", f"/quotas/{FAKE_PROJECT}", op="probe",
                            what="network quotas")),
        (("keypair",), "os_compute_api:os-keypairs:index (another user)",
         lambda: tc.request("compute", "GET", "/os-keypairs", op="probe", what="keypairs",
                            params={"user_id": FAKE_PROJECT}, microversion="2.10")),
        (("volume",), "volume_extension:types_manage (list)",
         lambda: tc.request("block_storage", "GET", "/types", op="probe",
                            what="volume types")),
        (("image", "image_member"), "get_images (all visibilities)",
         lambda: tc.request("image", "GET", "/images", op="probe", what="images",
                            params={"visibility": "all", "limit": 1})),
    ]


# What no read can show: creating in another project (or for another user) takes the admin
# role on a standard policy.
NOT_PROBEABLE = {
    "project": "identity:create_project", "user": "identity:create_user",
    "role_assignment": "identity:create_grant", "quota": "update quota sets",
    "network": "create_network (project_id of another project)",
    "subnet": "create_subnet (another project)", "router": "create_router (another project)",
    "router_interface": "add_router_interface (another project)",
    "security_group": "create_security_group (another project)",
    "security_group_rule": "create_security_group_rule (another project)",
    "keypair": "os_compute_api:os-keypairs:create (user_id of another user)",
    "image": "add_image (owner another project), upload_image",
    "image_member": "add_member, modify_member",
    "volume": "volume:create in the migrated project (as the migrator user, member there)",
    "server": "os_compute_api:servers:create (as its owner), create_port with mac_address "
              "(admin), os-stop and createImage on the source",
}


def _permissions(report: DeepReport, plan: Plan, tc: Any) -> None:
    from migrator.clouds.target_base import TargetCloudError

    kinds = {s.kind for s in plan.steps}
    quota_services = {s.source_id.partition(":")[0] for s in plan.steps if s.kind == "quota"}
    for stands_for, policy, probe in _probes(tc):
        if stands_for[0] == "quota":
            service = stands_for[1] if len(stands_for) > 1 else "compute"
            wanted = ["quota"] if service in quota_services else []
        else:
            wanted = [k for k in stands_for if k in kinds]
        if not wanted:
            continue
        try:
            probe()
        except TargetCloudError as exc:
            if exc.status in (401, 403):
                report.add(None, "permissions", ERROR,
                           f"target {tc.name}: {', '.join(wanted)} steps need {policy}: the "
                           f"probe was refused (HTTP {exc.status})")
                continue
            raise
        report.add(None, "permissions", OK, f"{', '.join(wanted)}: {policy} allowed (probed)")
    roles = _token_roles(tc)
    unprobed = sorted(k for k in kinds if k in NOT_PROBEABLE)
    if "admin" not in roles:
        report.add(None, "permissions", ERROR,
                   f"target {tc.name}: the token's roles are {', '.join(sorted(roles)) or 'none'}"
                   f"; {', '.join(unprobed)} steps create in other projects, which needs the "
                   "admin role (not probeable without writing: "
                   + "; ".join(NOT_PROBEABLE[k] for k in unprobed) + ")")
    else:
        report.add(None, "permissions", OK, "not probeable by a read, named: "
                   + "; ".join(NOT_PROBEABLE[k] for k in unprobed)
                   + " (the token holds the admin role)")


# -- quotas and capacity ---------------------------------------------------------------------

# What each kind consumes, per quota key and service.
_CONSUMES = {
    "network": [("network", "network")], "subnet": [("network", "subnet")],
    "router": [("network", "router")], "router_interface": [("network", "port")],
    "security_group": [("network", "security_group")],
    "security_group_rule": [("network", "security_group_rule")],
    "keypair": [("compute", "key_pairs")],
    "volume": [("volume", "volumes")],
}


def consumption(steps: list[PlanStep]) -> dict[tuple[str, str], int]:
    """(service, quota key) -> what the tenant's steps use, with what Neutron adds by itself
    (a DHCP port per network, the default group with 4 rules, 2 egress rules per group)."""
    used: Counter[tuple[str, str]] = Counter()
    for step in steps:
        for item in _CONSUMES.get(step.kind, ()):
            used[item] += 1
        attrs = step.spec.get("attrs") or {}
        if step.kind == "volume":
            used[("volume", "gigabytes")] += int(attrs.get("size") or 0)
        elif step.kind == "network":
            used[("network", "port")] += 1
        elif step.kind == "router" and (attrs.get("external_gateway_info") or
                                        (step.spec.get("lookup") or {}).get("external_network")):
            pass  # the gateway port is the router's, outside the project's port quota
        elif step.kind == "server":
            # The server, a port per source port, the volumes its cutover moves.
            lookup: Any = step.spec.get("lookup") or {}
            used[("compute", "instances")] += 1
            used[("network", "port")] += len(lookup.get("ports") or [])
            for vol in lookup.get("volumes") or []:
                used[("volume", "volumes")] += 1
                used[("volume", "gigabytes")] += int((vol.get("attrs") or {}).get("size") or 0)
        elif step.kind == "security_group" and step.name != "default":
            used[("network", "security_group_rule")] += 2
    if steps and not any(s.kind == "security_group" and s.name == "default" for s in steps) \
            and any(s.kind in ("network", "security_group") for s in steps):
        used[("network", "security_group")] += 1
        used[("network", "security_group_rule")] += 4
    return dict(used)


def _capacity(report: DeepReport, plan: Plan, tc: Any) -> None:
    by_tenant: dict[str, list[PlanStep]] = defaultdict(list)
    for step in plan.steps:
        by_tenant[step.tenant or "-"].append(step)
    defaults: dict[str, dict[str, Any]] = {}
    for tenant, steps in sorted(by_tenant.items()):
        used = consumption(steps)
        if not used:
            continue
        planned = {s.source_id.partition(":")[0]: dict(s.spec.get("attrs") or {})
                   for s in steps if s.kind == "quota"}
        project = next((s for s in steps if s.kind == "project"), None)
        existing = (project.spec.get("lookup") or {}).get("adopt_id") if project else None
        in_use: dict[str, dict[str, int]] = {}
        if existing:
            in_use = _usage(tc, str(existing))
        over = []
        for (service, key), count in sorted(used.items()):
            limit = planned.get(service, {}).get(key)
            source = "the plan's quota"
            if limit is None:
                if service not in defaults:
                    defaults[service] = _limits(tc, service, str(existing or FAKE_PROJECT))
                limit, source = defaults[service].get(key), "the target's default quota"
            if not isinstance(limit, int) or limit < 0:
                continue
            busy = in_use.get(service, {}).get(key, 0)
            if busy + count > limit:
                over.append(f"{count} {key}" + (f" (+{busy} in use)" if busy else "")
                            + f" > {limit} ({service}, {source})")
        if over:
            report.add(tenant, "quota", ERROR, "over quota: " + "; ".join(over))
        else:
            report.add(tenant, "quota", OK, "fits: " + ", ".join(
                f"{n} {k}" for (_s, k), n in sorted(used.items())))


def _limits(tc: Any, service: str, project_id: str) -> dict[str, Any]:
    try:
        return dict(tc.get_quotas(service, project_id))
    except MigratorError:
        return {}


def _usage(tc: Any, project_id: str) -> dict[str, dict[str, int]]:
    """What an existing project already uses, per service (Cinder's ``usage``, Neutron's
    quota details, Nova's detail)."""
    out: dict[str, dict[str, int]] = {}
    body = tc.request("block_storage", "GET", f"/os-quota-sets/{project_id}", op="read usage",
                      what=f"volume quotas of {project_id}", params={"usage": "true"})
    out["volume"] = {k: int(v.get("in_use", 0)) for k, v in body["quota_set"].items()
                     if isinstance(v, dict)}
    body = tc.request("network", "GET", f"/quotas/{project_id}/details", op="read usage",
                      what=f"network quotas of {project_id}", missing_ok=True)
    if body:
        out["network"] = {k: int(v.get("used", 0)) for k, v in body["quota"].items()
                          if isinstance(v, dict)}
    return out


# -- mappings, formats, names --------------------------------------------------------------


def _volume_types(report: DeepReport, plan: Plan, tc: Any) -> None:
    wanted: dict[str, list[PlanStep]] = defaultdict(list)
    for step in plan.steps:
        if step.kind == "volume":
            vtype = (step.spec.get("attrs") or {}).get("volume_type")
            if vtype:
                wanted[str(vtype)].append(step)
    if not wanted:
        return
    types = tc.list_volume_types()
    known = {str(t.get("name")) for t in types} | {str(t.get("id")) for t in types}
    for vtype, steps in sorted(wanted.items()):
        if vtype in known:
            report.add(None, "volume types", OK, f"volume type {vtype!r} exists "
                       f"({len(steps)} volume(s))")
            continue
        for step in steps:
            report.add(step.tenant, "volume types", ERROR,
                       f"step {step.key}: volume type {vtype!r} (mapped from "
                       f"{(step.spec.get('lookup') or {}).get('source_volume_type')!r}) does "
                       "not exist on the target")


def _flavors(report: DeepReport, plan: Plan, tc: Any) -> None:
    """Each server's target flavor (``attrs.flavor``, the mapped name; ``lookup.flavor_id``
    when the planner saw it on the target) still exists."""
    servers = [s for s in plan.steps if s.kind == "server"]
    if not servers:
        return
    flavors = tc.request("compute", "GET", "/flavors", op="list", what="flavors",
                         params={"is_public": "None"})["flavors"]
    names = {str(f.get("name")) for f in flavors}
    ids = {str(f.get("id")) for f in flavors}
    for step in servers:
        name = str((step.spec.get("attrs") or {}).get("flavor") or "")
        flavor_id = (step.spec.get("lookup") or {}).get("flavor_id")
        if flavor_id and str(flavor_id) not in ids:
            report.add(step.tenant, "flavors", ERROR, f"step {step.key}: flavor {name!r} "
                       f"(id {flavor_id}) does not exist on the target")
        elif not flavor_id and name not in names and name not in ids:
            report.add(step.tenant, "flavors", ERROR, f"step {step.key}: flavor {name!r} "
                       "does not exist on the target")


def _images(report: DeepReport, plan: Plan, tc: Any) -> None:
    from migrator.disk_formats import label_mismatch

    images = [s for s in plan.steps if s.kind == "image"]
    if not images:
        return
    schema = tc.request("image", "GET", "/schemas/image", op="read", what="image schema")
    props = (schema or {}).get("properties") or {}
    for step in images:
        attrs, lookup = step.spec.get("attrs") or {}, step.spec.get("lookup") or {}
        label, content = attrs.get("disk_format"), lookup.get("content_format")
        if label_mismatch(label, attrs.get("container_format"), content):
            report.add(step.tenant, "image formats", ERROR,
                       f"step {step.key}: image {step.name!r} would be sent as {label} but its "
                       f"bytes are {content}: a target that checks formats (Glance's "
                       "require_image_format_match) refuses the upload; plan with "
                       "image_formats: detect or fix the label")
        for key, value in sorted(attrs.items()):
            enum = (props.get(key) or {}).get("enum") if isinstance(props.get(key), dict) \
                else None
            if enum and value is not None and value not in enum:
                report.add(step.tenant, "image properties", ERROR,
                           f"step {step.key}: {key}={value!r} is not one of the target's "
                           f"{', '.join(map(str, (e for e in enum if e is not None)))}")
    bad = [f for f in report.findings if f.check.startswith("image") and f.result == ERROR]
    if not bad:
        report.add(None, "image formats", OK, f"{len(images)} image(s): labels match their "
                   "bytes, fields within the target's image schema")


def _user_clashes(report: DeepReport, plan: Plan, tc: Any) -> None:
    from migrator.clouds.target_base import USER_SOURCE_ATTRIBUTE

    for step in plan.steps:
        if step.kind != "user" or (step.spec.get("lookup") or {}).get("adopt_id"):
            continue
        attrs = step.spec.get("attrs") or {}
        if not attrs.get("name"):
            continue
        users = tc.users_named(str(attrs["name"]), str(attrs.get("domain_id") or "default"))
        clash = [u for u in users if u.get(USER_SOURCE_ATTRIBUTE) != step.source_id]
        if clash:
            report.add(step.tenant, "names", ERROR,
                       f"step {step.key}: user {attrs['name']!r} exists on the target "
                       f"({clash[0]['id']}) and was not created by migrator from "
                       f"{step.source_id}")


# -- the source ------------------------------------------------------------------------------


def _source_checks(report: DeepReport, plan: Plan, source: Any,
                   open_source: Callable[[], Any] | None, settings: Any) -> None:
    from migrator.clouds.target_base import catalog_types
    from migrator.transfer.errors import TransferError
    from migrator.transfer.volume_api import Api

    opened = None
    name = str(plan.source.get("cloud"))
    try:
        if source is None and open_source is not None:
            source = opened = open_source()
        if source is None:
            return
        before = _calls(source)
        conn = getattr(source, "conn", None) or source
        try:
            services = catalog_types(conn)
        except MigratorError as exc:
            report.add(None, "credentials", ERROR, f"source {name}: {exc}")
            return
        report.add(None, "credentials", OK, f"source {name}: token issued; catalog has "
                   f"{', '.join(sorted(services))}")
        api = Api(source)
        force = bool(getattr(settings, "allow_force_upload", False))
        for step in plan.steps:
            if step.kind not in DATA_KINDS:
                continue
            try:
                if step.kind == "server":
                    found = api.request("compute", "GET", f"servers/{step.source_id}",
                                        f"reading server {step.source_id}", missing_ok=True)
                    record = found.get("server") if isinstance(found, dict) else None
                else:
                    record = api.image(step.source_id) if step.kind == "image" else \
                        api.volume(step.source_id)
            except TransferError as exc:
                report.add(step.tenant, "source", ERROR, f"step {step.key}: {exc}")
                continue
            if record is None:
                report.add(step.tenant, "source", ERROR, f"step {step.key}: {step.kind} "
                           f"{step.source_id} is gone from {name}")
            elif step.kind == "server" and record.get("status") not in ("ACTIVE", "SHUTOFF"):
                report.add(step.tenant, "source", ERROR, f"step {step.key}: server is "
                           f"{record.get('status')} on {name}, not ACTIVE or SHUTOFF")
            elif step.kind == "image" and record.get("status") != "active":
                report.add(step.tenant, "source", ERROR, f"step {step.key}: image is "
                           f"{record.get('status')} on {name}, not active")
            elif step.kind == "volume" and record.get("status") != "available" and not (
                    record.get("status") == "in-use" and force):
                report.add(step.tenant, "source", ERROR,
                           f"step {step.key}: volume is {record.get('status')} on {name}"
                           + ("; an attached volume needs transfer.allow_force_upload"
                              if record.get("status") == "in-use" else ""))
        if any(s.kind == "volume" for s in plan.steps):
            report.add(None, "permissions", OK, f"source {name}: volume steps need "
                       "volume_extension:volume_actions:upload_image (not probeable without "
                       "writing: named)")
        report.source_calls = _calls(source) - before
    finally:
        if opened is not None:
            opened.close()


def _calls(handle: Any) -> int:
    counter = getattr(handle, "counter", None)
    total = getattr(counter, "total", None)
    return int(total() if callable(total) else total or 0)


# -- the estimate ----------------------------------------------------------------------------


def _bytes_of(step: PlanStep, per_gib: float | None = None) -> int:
    """The bytes a data step moves: an image's size; a volume's size in GiB times what an
    earlier run's volumes moved per GiB (``per_gib``), else a full GiB (Cinder uploads a raw
    volume whole)."""
    if step.kind == "image":
        size = (step.spec.get("lookup") or {}).get("size")
        return int(size) if isinstance(size, int) else 0
    if step.kind == "volume":
        gib = int((step.spec.get("attrs") or {}).get("size") or 0)
        return int(gib * (per_gib if per_gib is not None else GIB))
    if step.kind == "server":
        # The planner's figure: the image-backed disk's and the volumes' bytes.
        size = (step.spec.get("lookup") or {}).get("size")
        return int(size) if isinstance(size, int) else 0
    return 0


def _bytes_per_tenant(plan: Plan, per_gib: float | None = None) -> dict[str, int]:
    out: Counter[str] = Counter()
    for step in plan.steps:
        if step.kind in DATA_KINDS:
            out[step.tenant or "-"] += _bytes_of(step, per_gib)
    return dict(out)


def estimate(plan: Plan, bandwidth: int | None, measured: Measured | None, workers: int,
             parallel_transfers: int) -> Estimate:
    """Bytes over the rate (the configured bandwidth cap, else the rate the latest run that
    moved bytes measured) while the other steps run beside the copies: the run takes the
    longer of the two, after the steps a copy waits for (its project, its quota)."""
    counts = Counter(s.kind for s in plan.steps)
    per_gib = measured.bytes_per_volume_gib if measured is not None else None
    total = sum(_bytes_of(s, per_gib) for s in plan.steps)
    rate: float | None = float(bandwidth) if bandwidth else None
    basis = f"bandwidth {bandwidth} B/s (transfer.bandwidth or --bandwidth)" if rate else ""
    if rate is None and measured is not None and measured.rate:
        rate, basis = measured.rate, f"rate measured in run {measured.run}"
    if rate is None:
        basis = "no bandwidth configured and no earlier run measured a rate: bytes not timed"
    seconds_of = dict(measured.step_seconds) if measured is not None else {}
    if measured is not None:
        basis += f"; step times measured in run {measured.run}"
        if per_gib is not None and counts.get("volume"):
            basis += f" (volumes: {per_gib:,.0f} bytes per GiB, as measured there)"
    else:
        basis += f"; {DEFAULT_STEP_SECONDS:g} s per step (nothing measured yet)"

    def per_step(kind: str) -> float:
        return seconds_of.get(kind, DEFAULT_STEP_SECONDS)

    meta = sum(n * per_step(k) for k, n in counts.items() if k not in DATA_KINDS)
    steps_seconds = meta / max(workers, 1)
    transfer = total / rate if rate else 0.0
    # A copy's own calls (create, verify, the volume's waits) beside its bytes.
    overhead = 0.0
    for kind in DATA_KINDS:
        if not counts.get(kind):
            continue
        own = per_step(kind)
        if measured is not None and measured.rate and measured.steps.get(kind):
            # A measured step's time holds its copy, made at the run's rate shared by the
            # copies running beside it: what is left is the step's own calls and waits.
            share = measured.data_bytes / sum(measured.steps.get(k, 0) for k in DATA_KINDS)
            own = max(own - share * max(parallel_transfers, 1) / measured.rate, 0.0)
        overhead += counts[kind] * own / max(parallel_transfers, 1)
    lead = (per_step("project") + per_step("quota")) if total else 0.0
    seconds = lead + max(transfer + overhead, steps_seconds)
    return Estimate(total, counts.get("image", 0), counts.get("volume", 0), len(plan.steps),
                    round(seconds, 3), round(transfer, 3), round(steps_seconds, 3), rate,
                    basis, {k: round(per_step(k), 3) for k in sorted(counts)})


# -- recording -------------------------------------------------------------------------------


def record(factory: sessionmaker[Session], plan: Plan, path: Path, report: DeepReport,
           problems: list[str], wave: int | None) -> str:
    """The dry run as a run of kind ``dry_run``: no steps, its findings in its options and in
    its status event; status ``finished`` (nothing would fail) or ``failed``."""
    from migrator.engine.runs import create_run, set_run_status
    from migrator.store.run_kinds import mark_dry_run

    base = f"{plan.name}-dry-run"
    taken = taken_names(factory, base)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    findings = [asdict(f) for f in report.findings]
    summary = {"ok": report.ok and not problems, "problems": problems,
               "errors": sum(1 for f in report.findings if f.result == ERROR),
               "estimate": asdict(report.estimate) if report.estimate else None}
    run_id = create_run(factory, name, [], [], options={
        "kind": DRY_RUN, "plan": plan.name, "plan_file": str(path),
        "plan_hash": plan.content_hash, "wave": wave, "findings": findings, **summary})
    mark_dry_run(factory, run_id)
    set_run_status(factory, run_id, "finished" if summary["ok"] else "failed",
                   started=True, finished=True, detail=summary)
    return name


def estimate_text(e: Estimate) -> str:
    size = f"{e.bytes / GIB:.2f} GiB" if e.bytes >= GIB else f"{e.bytes / (1 << 20):.1f} MiB"
    return (f"{size} to copy ({e.images} image(s), {e.volumes} volume(s)), {e.steps} steps: "
            f"about {_duration(e.seconds)} (copies {_duration(e.transfer_seconds)}, other "
            f"steps {_duration(e.steps_seconds)}); {e.basis}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"
