"""Reading a legacy (Liberty-era) cloud: :class:`LegacySource` returns inventory Items.

Economy: every kind is read with LIST calls over the whole cloud (admin listings with
``all_tenants`` where the API needs it, pagination followed), never one GET per item. Only
what the APIs offer per owner alone is read per owner, in a thread pool:

- quotas: Nova and Cinder per project (2 calls per tenant); Neutron lists every project
  with non-default quotas in one call (the others are read per project);
- keypairs: Nova keeps them per user: ``GET /os-keypairs?user_id=`` at microversion 2.10, one
  call per user of the selected tenants;
- image members: per image, but only for images that have members (Liberty's admin
  ``visibility=shared`` listing returns exactly those);
- flavors: extra specs per flavor, access lists per private flavor (cloud-wide, a constant).

Liberty quirks handled: Neutron's owner is the raw ``tenant_id`` (the SDK's ``project_id`` is
None there); Neutron, Glance and Cinder filters are not trusted (results are filtered here);
Glance is read through v2 (properties are top-level keys of the raw JSON, kept as they are);
Cinder through v2 with ``all_tenants`` (owner ``os-vol-tenant-attr:tenant_id``); Keystone
through v3 (v2 tenants are v3 projects of the ``default`` domain).

Limited permissions: when the admin credentials are refused a listing (403), or are not admin
at all (403 on the project listing), each tenant is read with a token scoped to it: the
tenant's own credentials from the configuration (a clouds.yaml name), else the operator's
credentials rescoped to that tenant when the operator holds a role there. A member token
reads its own project's networks, images, volumes, quotas and its own user, keypairs and
role assignments (from the token itself). Whatever still cannot be read is reported per
tenant as :class:`Unreadable` (kind and reason), never fatal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from migrator.clouds.connection import CloudHandle, open_cloud
from migrator.clouds.errors import CloudCallError
from migrator.errors import CloudError, ConfigError
from migrator.store.inventory import Item

log = logging.getLogger(__name__)

GIB = 1 << 30
KEYPAIR_MICROVERSION = "2.10"
DEFAULT_PAGE_SIZE = 1000
DEFAULT_WORKERS = 8
KINDS = ("domain", "project", "user", "role", "role_assignment", "quota", "flavor",
         "network", "subnet", "router", "security_group", "security_group_rule", "keypair",
         "image", "volume")
DENIED = frozenset({401, 403})

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str


@dataclass(frozen=True)
class Unreadable:
    """Something discovery could not read: ``tenant`` is the project id (None: cloud-wide)."""

    tenant: str | None
    tenant_name: str | None
    kind: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReadResult:
    items: list[Item]
    tenants: list[Tenant]  # the tenants read (the selection, resolved)
    unreadable: list[Unreadable] = field(default_factory=list)
    mode: str = "admin"  # admin: cloud-wide listings; limited: per-tenant tokens


class _Collector:
    """Items by (kind, source id), deduplicated, plus the unreadable list; thread-safe."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Item] = {}
        self.unreadable: list[Unreadable] = []
        self._lock = threading.Lock()

    def add(self, item: Item) -> None:
        with self._lock:
            self.items.setdefault((item.kind, item.source_id), item)

    def add_all(self, items: Iterable[Item]) -> None:
        """Like :meth:`add` for each, under one lock: a lock per item cost 4% of a
        discovery's client CPU (270,000 items at 10,000 tenants)."""
        found = self.items
        with self._lock:
            for item in items:
                found.setdefault((item.kind, item.source_id), item)

    def merge(self, other: _Collector) -> None:
        """``other``'s items and unreadable entries, after this one's."""
        self.add_all(other.items.values())
        for entry in other.unreadable:
            self.denied(entry)

    def denied(self, entry: Unreadable) -> None:
        with self._lock:
            if entry not in self.unreadable:
                self.unreadable.append(entry)


def _tenant_of(raw: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = raw.get(key)
        if value:
            return str(value)
    return None


class LegacySource:
    """Reads a legacy cloud through ``admin`` (a source CloudHandle).

    ``tenant_credentials`` maps a tenant (name or id) to the clouds.yaml name of credentials
    scoped to it; they are opened lazily, sharing ``admin``'s call counter.
    """

    def __init__(self, admin: CloudHandle, *,
                 tenant_credentials: Mapping[str, str] | None = None,
                 workers: int = DEFAULT_WORKERS, page_size: int = DEFAULT_PAGE_SIZE,
                 progress: Progress | None = None) -> None:
        self.admin = admin
        self.tenant_credentials = dict(tenant_credentials or {})
        self.workers = max(1, workers)
        self.page_size = page_size
        self.progress = progress or (lambda message: None)
        self._handles: dict[str, CloudHandle | None] = {}
        self._handle_errors: dict[str, str] = {}
        self._handles_lock = threading.Lock()
        self._operator_projects: set[str] = set()
        self._names: dict[str, str] = {}
        self._assigned: dict[str, set[str]] = {}
        self._shared_images: set[str] = set()
        self._stop = threading.Event()  # set when one of read's concurrent parts failed

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def cloud(self) -> str:
        return self.admin.name

    def list_all(self, handle: CloudHandle, service: str, path: str, key: str,
                 params: Mapping[str, Any] | None = None, *, paged: bool = True
                 ) -> list[dict[str, Any]]:
        """Every entry of a collection, following next links (``<key>_links`` for Nova,
        Cinder and Neutron, ``next`` for Glance). Stops when no link is given, so a server
        that ignores ``limit`` (Liberty Neutron's default) is read in one call."""
        query: dict[str, Any] = dict(params or {})
        if paged and self.page_size:
            query["limit"] = self.page_size
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        while True:
            body = handle.get_json(service, path, params=query, resource=key) or {}
            page = body.get(key) or []
            out.extend(page)
            link = _next_link(body, key)
            if not link or not page:
                return out
            marker = dict(parse_qsl(urlsplit(link).query)).get("marker", "")
            if marker in seen:
                raise CloudError(f"cloud {handle.name}: GET {path}: the server repeats page "
                                 f"marker {marker}; pagination aborted")
            seen.add(marker)
            query = dict(parse_qsl(urlsplit(link).query))

    def _tenant_handle(self, tenant: Tenant) -> CloudHandle | None:
        """Credentials scoped to ``tenant``: its own from the config, else the operator's
        rescoped (when the operator holds a role there). None when there are none."""
        with self._handles_lock:
            if tenant.id in self._handles:
                return self._handles[tenant.id]
            handle: CloudHandle | None = None
            name = self.tenant_credentials.get(tenant.name) or self.tenant_credentials.get(
                tenant.id)
            try:
                if name:
                    handle = open_cloud(name, config_file=self.admin.config_file,
                                        role="source", timeout=self.admin.timeout,
                                        counter=self.admin.counter)
                elif tenant.id == self.admin.project_id:
                    handle = self.admin
                elif tenant.id in self._operator_projects:
                    handle = self.admin.scoped_to(tenant.id)
            except CloudError as exc:
                self._handle_errors[tenant.id] = exc.message
                handle = None
            self._handles[tenant.id] = handle
            return handle

    def _no_handle_reason(self, tenant: Tenant) -> str:
        return self._handle_errors.get(tenant.id) or (
            "the admin credentials cannot read it and no credentials for this tenant are "
            "configured (source.tenant_credentials)")

    def _map(self, fn: Callable[[Any], None], args: Iterable[Any]) -> None:
        """``fn`` on each of ``args`` in ``self.workers`` threads, each taking the next task
        from one shared iterator. Not a ThreadPoolExecutor: its Future, Condition and wakeup
        of the waiting caller per task were 10% of the client's CPU over 40,000 per-owner
        reads. The first failure stops the other workers (after their current task) and is
        raised here; so does a stop of the read (:meth:`read`: a failure in the reads running
        beside)."""
        tasks = list(args)
        if not tasks:
            return
        if self.workers == 1 or len(tasks) == 1:
            for arg in tasks:
                self._check_stopped()
                fn(arg)
            return
        pending = iter(tasks)
        taking = threading.Lock()
        failures: list[BaseException] = []

        def work() -> None:
            while not failures and not self._stop.is_set():
                with taking:
                    arg = next(pending, _NO_TASK)
                if arg is _NO_TASK:
                    return
                try:
                    fn(arg)
                except BaseException as exc:  # re-raised by the caller
                    failures.append(exc)
                    return

        threads = [threading.Thread(target=work, name=f"discover-{n}", daemon=True)
                   for n in range(min(self.workers, len(tasks)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        self._check_stopped()

    def _check_stopped(self) -> None:
        if self._stop.is_set():
            raise _Stopped(f"cloud {self.cloud}: discovery stopped: a concurrent read failed")

    # -- the whole read ----------------------------------------------------------------------
    def read(self, tenants: Sequence[str] | None = None) -> ReadResult:
        """Read the cloud; ``tenants`` (names or ids) restricts per-tenant resources to those
        tenants (plus what they reference: shared and external networks, remote security
        groups, images their volumes came from or that are shared with them)."""
        out = _Collector()
        identity = self._read_identity(out)
        selected, missing = self._resolve(identity, tenants)
        for name in missing:
            out.denied(Unreadable(None, name, "project",
                                  "not visible to the admin credentials and no credentials "
                                  "for this tenant are configured"))
        self.progress(f"identity: {len(identity.projects)} projects, {len(identity.users)} "
                      f"users, {len(identity.assignments)} role assignments "
                      f"({self.admin.calls} calls)")
        selected_ids = {t.id for t in selected}
        limited = identity.limited
        if limited:
            self._read_identity_per_tenant(selected, identity, out)
        self._add_identity(identity, selected_ids, tenants is None, out)

        # Quotas and keypairs need only the identity: they are read beside the listings, so
        # that the client's decoding of the listing pages overlaps the simulator's (or
        # cloud's) answering of the per-owner reads. Their items are merged after the
        # listings', so the result and the unreadable list come out as if read in sequence.
        users = [item for item in out.items.values() if item.kind == "user"]
        per_owner = _Collector()
        self._stop.clear()
        beside = _Beside(lambda: self._read_per_owner(selected, users, per_owner))
        try:
            self._read_listings(selected, limited, out)
            self._keep_selection(out, selected_ids, identity, all_tenants=tenants is None)
        except _Stopped:
            beside.result()  # the reads beside failed first: theirs is the error to report
            raise
        except BaseException:
            self._stop.set()
            beside.wait()
            raise
        beside.result()
        out.merge(per_owner)
        self._read_members(out)
        self.progress(f"image members read ({self.admin.calls} calls)")
        items = sorted(out.items.values(), key=lambda i: (KINDS.index(i.kind), i.source_id))
        return ReadResult(items=items, tenants=sorted(selected, key=lambda t: t.name),
                          unreadable=out.unreadable, mode="limited" if limited else "admin")

    def _read_listings(self, selected: Sequence[Tenant], limited: bool,
                       out: _Collector) -> None:
        self._read_flavors(out)
        self.progress(f"flavors read ({self.admin.calls} calls)")
        self._read_network(selected, limited, out)
        self.progress(f"networks, routers, security groups read ({self.admin.calls} calls)")
        self._read_images(selected, limited, out)
        self.progress(f"images read ({self.admin.calls} calls)")
        self._read_volumes(selected, limited, out)
        self.progress(f"volumes read ({self.admin.calls} calls)")

    def _read_per_owner(self, selected: Sequence[Tenant], users: Sequence[Item],
                        out: _Collector) -> None:
        try:
            self._read_quotas(selected, out)
            self.progress(f"quotas read ({self.admin.calls} calls)")
            self._read_keypairs(selected, users, out)
            self.progress(f"keypairs read ({self.admin.calls} calls)")
        except BaseException:
            self._stop.set()  # the listings stop at their next per-tenant task
            raise

    # -- identity ----------------------------------------------------------------------------
    def _read_identity(self, out: _Collector) -> _Identity:
        ident = _Identity()
        admin = self.admin
        try:
            ident.projects = {p["id"]: p for p in self.list_all(
                admin, "identity", "/projects", "projects", paged=False)}
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            ident.limited = True
            me = admin.user_id
            mine = self.list_all(admin, "identity", f"/users/{me}/projects", "projects",
                                 paged=False)
            ident.projects = {p["id"]: p for p in mine}
            self._operator_projects = set(ident.projects)
            out.denied(Unreadable(None, None, "project",
                                  f"the admin credentials may not list projects "
                                  f"(HTTP {exc.status}); reading tenant by tenant"))
        for kind, path, key, target in (("domain", "/domains", "domains", ident.domains),
                                        ("role", "/roles", "roles", ident.roles),
                                        ("user", "/users", "users", ident.users)):
            try:
                for raw in self.list_all(admin, "identity", path, key, paged=False):
                    target[raw["id"]] = raw
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                out.denied(Unreadable(None, None, kind,
                                      f"listing needs admin (HTTP {exc.status})"))
        try:
            ident.assignments = self.list_all(admin, "identity", "/role_assignments",
                                              "role_assignments", paged=False)
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            out.denied(Unreadable(None, None, "role_assignment",
                                  f"listing needs admin (HTTP {exc.status})"))
        # Tenants named in the configuration that the admin cannot see: their own token
        # names their project.
        for wanted in self.tenant_credentials:
            if any(wanted in (p["id"], p["name"]) for p in ident.projects.values()):
                continue
            if not ident.limited:
                continue
            probe = Tenant(id=wanted, name=wanted)
            handle = self._credentials_handle(probe)
            if handle is None:
                continue
            uid = handle.user_id
            for p in self.list_all(handle, "identity", f"/users/{uid}/projects", "projects",
                                   paged=False):
                if wanted in (p["id"], p["name"]):
                    ident.projects[p["id"]] = p
                    with self._handles_lock:
                        self._handles[p["id"]] = handle
        return ident

    def _credentials_handle(self, tenant: Tenant) -> CloudHandle | None:
        name = self.tenant_credentials.get(tenant.name) or self.tenant_credentials.get(
            tenant.id)
        if not name:
            return None
        try:
            return open_cloud(name, config_file=self.admin.config_file, role="source",
                              timeout=self.admin.timeout, counter=self.admin.counter)
        except CloudError as exc:
            self._handle_errors[tenant.id] = exc.message
            return None

    def _resolve(self, ident: _Identity, wanted: Sequence[str] | None
                 ) -> tuple[list[Tenant], list[str]]:
        tenants = {pid: Tenant(pid, str(p.get("name") or pid))
                   for pid, p in ident.projects.items() if not p.get("is_domain")}
        self._names = {t.id: t.name for t in tenants.values()}
        if wanted is None:
            return list(tenants.values()), []
        by_name: dict[str, list[Tenant]] = {}
        for tenant in tenants.values():
            by_name.setdefault(tenant.name, []).append(tenant)
        selected: dict[str, Tenant] = {}
        missing: list[str] = []
        for name in wanted:
            if name in tenants:
                selected[name] = tenants[name]
            elif len(by_name.get(name, [])) == 1:
                tenant = by_name[name][0]
                selected[tenant.id] = tenant
            elif by_name.get(name):
                raise ConfigError(f"tenant {name!r} is ambiguous on cloud {self.cloud}: "
                                  f"projects {', '.join(t.id for t in by_name[name])}; "
                                  "give the id")
            elif ident.limited:
                missing.append(name)
            else:
                known = sorted(by_name)
                shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
                raise ConfigError(f"unknown tenant {name!r} on cloud {self.cloud} "
                                  f"(known: {shown})")
        return list(selected.values()), missing

    def _read_identity_per_tenant(self, selected: Sequence[Tenant], ident: _Identity,
                                  out: _Collector) -> None:
        """Limited mode: each tenant's token shows its own user and role assignments."""
        for tenant in selected:
            handle = self._tenant_handle(tenant)
            if handle is None:
                for kind in ("user", "role_assignment"):
                    out.denied(Unreadable(tenant.id, tenant.name, kind,
                                          self._no_handle_reason(tenant)))
                continue
            auth: Any = handle.conn.session.auth
            access = auth.get_access(handle.conn.session)
            uid = access.user_id
            if uid not in ident.users:
                try:
                    raw = handle.get_json("identity", f"/users/{uid}", resource="user")
                    ident.users[uid] = raw["user"]
                except CloudCallError as exc:
                    if exc.status not in DENIED:
                        raise
            for role_id, role_name in zip(access.role_ids, access.role_names, strict=False):
                ident.roles.setdefault(role_id, {"id": role_id, "name": role_name})
                ident.assignments.append({"role": {"id": role_id}, "user": {"id": uid},
                                          "scope": {"project": {"id": tenant.id}},
                                          "_read_from": "token"})
            out.denied(Unreadable(tenant.id, tenant.name, "user",
                                  "only the credentials' own user and role assignments are "
                                  "readable without admin"))
            out.denied(Unreadable(tenant.id, tenant.name, "keypair",
                                  "keypairs belong to users: only the credentials' own user's "
                                  "are readable without admin"))

    def _add_identity(self, ident: _Identity, selected: set[str], everything: bool,
                      out: _Collector) -> None:
        for raw in ident.domains.values():
            out.add(Item("domain", raw["id"], None, raw.get("name"), _clean(raw)))
        for raw in ident.roles.values():
            out.add(Item("role", raw["id"], None, raw.get("name"), _clean(raw)))
        assigned: dict[str, set[str]] = {}
        for raw in ident.assignments:
            user = (raw.get("user") or {}).get("id")
            project = ((raw.get("scope") or {}).get("project") or {}).get("id")
            role = (raw.get("role") or {}).get("id")
            if not (user and project and role):
                continue  # group or domain assignments: not migrated
            if not everything and project not in selected:
                continue
            assigned.setdefault(user, set()).add(project)
            out.add(Item("role_assignment", f"{user}:{project}:{role}", project, None,
                         _clean(raw)))
        for raw in ident.projects.values():
            if everything or raw["id"] in selected:
                out.add(_project_item(raw))
        for raw in ident.users.values():
            default = raw.get("default_project_id")
            if everything or default in selected or raw["id"] in assigned:
                out.add(_user_item(raw, selected if not everything else None, assigned))
        self._assigned = assigned

    # -- compute: flavors, quotas, keypairs --------------------------------------------------
    def _read_flavors(self, out: _Collector) -> None:
        try:
            flavors = self.list_all(self.admin, "compute", "/flavors/detail", "flavors",
                                    {"is_public": "None"})
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            out.denied(Unreadable(None, None, "flavor", f"HTTP {exc.status}"))
            return

        def details(raw: dict[str, Any]) -> None:
            fid = raw["id"]
            attrs = dict(raw)
            attrs.pop("links", None)
            body = self.admin.get_json("compute", f"/flavors/{fid}/os-extra_specs",
                                       resource=f"flavor {fid}")
            attrs["extra_specs"] = (body or {}).get("extra_specs") or {}
            is_public = raw.get("os-flavor-access:is_public", True)
            attrs["is_public"] = is_public
            if not is_public:
                try:
                    access = self.admin.get_json(
                        "compute", f"/flavors/{fid}/os-flavor-access",
                        resource=f"flavor {fid}", allow_404=True)
                except CloudCallError as exc:
                    if exc.status not in DENIED:
                        raise
                    out.denied(Unreadable(None, None, "flavor",
                                          f"access list of private flavor {raw.get('name')} "
                                          f"(HTTP {exc.status})"))
                    access = None
                attrs["access"] = sorted(a["tenant_id"] for a in
                                         (access or {}).get("flavor_access") or [])
            out.add(Item("flavor", fid, None, raw.get("name"), attrs))

        self._map(details, flavors)

    def _read_quotas(self, selected: Sequence[Tenant], out: _Collector) -> None:
        network: dict[str, dict[str, Any]] = {}
        try:
            for raw in self.list_all(self.admin, "network", "/quotas", "quotas", paged=False):
                pid = raw.get("tenant_id") or raw.get("project_id")
                if pid:
                    network[pid] = raw
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise

        def one(tenant: Tenant) -> None:
            found: list[Item] = []
            for service, proxy, path, key in (
                ("compute", "compute", f"/os-quota-sets/{tenant.id}", "quota_set"),
                ("volume", "block_storage", f"/os-quota-sets/{tenant.id}", "quota_set"),
                ("network", "network", f"/quotas/{tenant.id}", "quota"),
            ):
                if service == "network" and tenant.id in network:
                    raw = dict(network[tenant.id])
                else:
                    raw = self._tenant_read(tenant, "quota", proxy, path, key, out)
                    if raw is None:
                        continue
                raw.pop("id", None)
                found.append(Item("quota", f"{service}:{tenant.id}", tenant.id, service, raw))
            out.add_all(found)

        self._map(one, selected)

    def _tenant_read(self, tenant: Tenant, kind: str, service: str, path: str, key: str,
                     out: _Collector, params: Mapping[str, Any] | None = None,
                     microversion: str | None = None) -> Any:
        """One GET for a tenant: with the admin token, else the tenant's own token."""
        try:
            body = self.admin.get_json(service, path, params=params, resource=kind,
                                       microversion=microversion)
            return body.get(key) if key else body
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            first = exc
        handle = self._tenant_handle(tenant)
        if handle is None or handle is self.admin:
            out.denied(Unreadable(tenant.id, tenant.name, kind,
                                  f"HTTP {first.status} with the admin credentials; "
                                  + self._no_handle_reason(tenant)))
            return None
        try:
            body = handle.get_json(service, path, params=params, resource=kind,
                                   microversion=microversion)
            return body.get(key) if key else body
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            out.denied(Unreadable(tenant.id, tenant.name, kind,
                                  f"HTTP {exc.status} with the tenant's own credentials too"))
            return None

    def _read_keypairs(self, selected: Sequence[Tenant], users: Sequence[Item],
                       out: _Collector) -> None:
        by_id = {t.id: t for t in selected}

        def one(user: Item) -> None:
            tenant_id = user.tenant if user.tenant in by_id else next(
                iter(sorted(self._assigned.get(user.source_id, set()) & set(by_id))), None)
            if tenant_id is None:
                return
            tenant = by_id[tenant_id]
            raw = self._keypairs_of(user.source_id, tenant, out)
            found: list[Item] = []
            for entry in raw or []:
                keypair = dict(entry.get("keypair") or entry)
                keypair.setdefault("user_id", user.source_id)
                name = keypair.get("name")
                found.append(Item("keypair", f"{user.source_id}:{name}", tenant_id, name,
                                  keypair))
            out.add_all(found)

        self._map(one, users)

    def _keypairs_of(self, user_id: str, tenant: Tenant, out: _Collector) -> Any:
        try:
            body = self.admin.get_json("compute", "/os-keypairs", params={"user_id": user_id},
                                       microversion=KEYPAIR_MICROVERSION, resource="keypairs")
            return body.get("keypairs")
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            status = exc.status
        handle = self._tenant_handle(tenant)
        if handle is not None and handle is not self.admin and handle.user_id == user_id:
            body = handle.get_json("compute", "/os-keypairs",
                                   microversion=KEYPAIR_MICROVERSION, resource="keypairs")
            return body.get("keypairs")
        out.denied(Unreadable(tenant.id, tenant.name, "keypair",
                              f"keypairs of user {user_id} (HTTP {status}): only admins "
                              "or the user itself may list them"))
        return None

    # -- network -----------------------------------------------------------------------------
    _NEUTRON = (("network", "/networks", "networks"), ("subnet", "/subnets", "subnets"),
                ("router", "/routers", "routers"),
                ("port", "/ports", "ports"),
                ("security_group", "/security-groups", "security_groups"))

    def _read_network(self, selected: Sequence[Tenant], limited: bool,
                      out: _Collector) -> None:
        lists: dict[str, list[dict[str, Any]]] = {}
        per_tenant: list[str] = []
        for kind, path, key in self._NEUTRON:
            params = {"device_owner": "network:router_interface"} if kind == "port" else {}
            if limited:
                per_tenant.append(kind)
                continue
            try:
                lists[kind] = self.list_all(self.admin, "network", path, key, params)
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                per_tenant.append(kind)
        if per_tenant:
            for kind, path, key in self._NEUTRON:
                if kind not in per_tenant:
                    continue
                params = {"device_owner": "network:router_interface"} if kind == "port" else {}
                keep: Callable[[dict[str, Any]], bool] | None = None
                if kind == "network":
                    keep = _usable_network
                elif kind == "subnet":
                    # Subnets of shared and external networks (a router interface on a shared
                    # network refers to one): owned by another project, yet the tenant's.
                    keep = _on_networks({str(n["id"]) for n in lists.get("network", [])
                                         if _usable_network(n)})
                lists[kind] = self._per_tenant_lists(
                    selected, kind, "network", path, key, params, out,
                    owner=("tenant_id", "project_id"), keep_foreign=keep)
        self._add_network(lists, out)

    def _per_tenant_lists(self, selected: Sequence[Tenant], kind: str, service: str,
                          path: str, key: str, params: Mapping[str, Any], out: _Collector,
                          owner: tuple[str, ...], keep_foreign: Callable[[dict[str, Any]],
                                                                         bool] | None = None
                          ) -> list[dict[str, Any]]:
        """A listing read with each tenant's own token; entries owned by another project are
        dropped (a member also sees shared and public things) unless ``keep_foreign``."""
        found: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()

        def one(tenant: Tenant) -> None:
            handle = self._tenant_handle(tenant)
            if handle is None:
                out.denied(Unreadable(tenant.id, tenant.name, _public_kind(kind),
                                      self._no_handle_reason(tenant)))
                return
            try:
                entries = self.list_all(handle, service, path, key, params)
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                out.denied(Unreadable(tenant.id, tenant.name, _public_kind(kind),
                                      f"HTTP {exc.status} with the tenant's credentials"))
                return
            with lock:
                for raw in entries:
                    holder = _tenant_of(raw, *owner)
                    if holder is None and owner == ("os-vol-tenant-attr:tenant_id",):
                        raw = {**raw, "os-vol-tenant-attr:tenant_id": tenant.id}
                        holder = tenant.id
                    if holder == tenant.id or (keep_foreign is not None and keep_foreign(raw)):
                        found.setdefault(str(raw["id"]), raw)

        self._map(one, selected)
        return list(found.values())

    def _add_network(self, lists: Mapping[str, list[dict[str, Any]]], out: _Collector) -> None:
        interfaces: dict[str, list[dict[str, Any]]] = {}
        for port in lists.get("port", []):
            for fixed in port.get("fixed_ips") or []:
                interfaces.setdefault(str(port.get("device_id")), []).append(
                    {"subnet_id": fixed.get("subnet_id"), "port_id": port["id"],
                     "ip_address": fixed.get("ip_address")})
        for kind in ("network", "subnet", "router", "security_group"):
            for raw in lists.get(kind, []):
                tenant = _tenant_of(raw, "tenant_id", "project_id")
                attrs = dict(raw)
                if kind == "router":
                    attrs["interfaces"] = sorted(interfaces.get(raw["id"], []),
                                                 key=lambda i: (i["subnet_id"] or "",
                                                                i["port_id"]))
                out.add(Item(kind, raw["id"], tenant, raw.get("name"), attrs))
                if kind == "security_group":
                    for rule in raw.get("security_group_rules") or []:
                        out.add(Item("security_group_rule", rule["id"],
                                     _tenant_of(rule, "tenant_id", "project_id") or tenant,
                                     None, dict(rule)))

    # -- images and volumes ------------------------------------------------------------------
    def _read_images(self, selected: Sequence[Tenant], limited: bool, out: _Collector) -> None:
        images: list[dict[str, Any]] | None = None
        self._shared_images = set()
        if not limited:
            try:
                images = self.list_all(self.admin, "image", "/images", "images")
                self._shared_images = {i["id"] for i in self.list_all(
                    self.admin, "image", "/images", "images", {"visibility": "shared"})}
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                images = None
        if images is None:
            images = self._per_tenant_lists(selected, "image", "image", "/images", "images",
                                            {}, out, owner=("owner",))
            # A member token cannot tell which of its images have members: ask for each
            # image it owns that is not public.
            self._shared_images = {i["id"] for i in images if i.get("visibility") != "public"}
        self._image_handles_limited = limited
        for raw in images:
            checksum = raw.get("checksum")
            out.add(Item("image", raw["id"], _tenant_of(raw, "owner"), raw.get("name"),
                         dict(raw), size_bytes=raw.get("size"),
                         content_hash=f"md5:{checksum}" if checksum else None))

    def _read_members(self, out: _Collector) -> None:
        images = [item for item in out.items.values()
                  if item.kind == "image" and item.source_id in self._shared_images]

        def one(item: Item) -> None:
            path = f"/images/{item.source_id}/members"
            try:
                body = self.admin.get_json("image", path, resource=f"image {item.source_id}")
            except CloudCallError as exc:
                if exc.status not in DENIED and exc.status != 404:
                    raise
                tenant = Tenant(item.tenant or "", self._names.get(item.tenant or "", ""))
                handle = self._tenant_handle(tenant) if item.tenant else None
                body = None
                if handle is not None and handle is not self.admin:
                    body = handle.get_json("image", path, resource=f"image {item.source_id}",
                                           allow_404=True)
                if body is None:
                    out.denied(Unreadable(item.tenant, tenant.name or None, "image",
                                          f"members of image {item.source_id}: "
                                          f"HTTP {exc.status}"))
                    return
            item.attributes["members"] = sorted(
                ({"member_id": m.get("member_id"), "status": m.get("status")}
                 for m in (body or {}).get("members") or []),
                key=lambda m: str(m["member_id"]))

        self._map(one, images)
        for item in out.items.values():
            if item.kind == "image":
                item.attributes.setdefault("members", [])

    def _read_volumes(self, selected: Sequence[Tenant], limited: bool,
                      out: _Collector) -> None:
        volumes: list[dict[str, Any]] | None = None
        if not limited:
            try:
                volumes = self.list_all(self.admin, "block_storage", "/volumes/detail",
                                        "volumes", {"all_tenants": 1})
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
        if volumes is None:
            volumes = self._per_tenant_lists(selected, "volume", "block_storage",
                                             "/volumes/detail", "volumes", {}, out,
                                             owner=("os-vol-tenant-attr:tenant_id",))
        for raw in volumes:
            attrs = dict(raw)
            attrs.pop("links", None)
            size = raw.get("size")
            out.add(Item("volume", raw["id"], _tenant_of(raw, "os-vol-tenant-attr:tenant_id"),
                         raw.get("name") or raw.get("display_name"), attrs,
                         size_bytes=int(size) * GIB if isinstance(size, int) else None))

    # -- selection ---------------------------------------------------------------------------
    def _keep_selection(self, out: _Collector, selected: set[str], ident: _Identity,
                        all_tenants: bool) -> None:
        """Drop the per-tenant resources of unselected tenants, except what the selection
        refers to (kept with their owner's project, so the planner can name both ends): shared
        and external networks, networks and subnets its subnets and routers use, remote
        security groups of its rules, images its volumes were made from. Images of other
        tenants shared with the selection through members are not looked for (that would
        need the members of every shared image): they come with their owner's tenant."""
        if all_tenants:
            return
        items = out.items
        keep: set[tuple[str, str]] = set()
        owners: set[str] = set()

        def ref(kind: str, source_id: Any) -> None:
            if source_id and (kind, str(source_id)) in items:
                keep.add((kind, str(source_id)))

        for key, item in items.items():
            if item.tenant is None or item.tenant in selected:
                keep.add(key)
        for key in list(keep):
            item = items[key]
            a = item.attributes
            if item.kind == "subnet":
                ref("network", a.get("network_id"))
            elif item.kind == "router":
                ref("network", (a.get("external_gateway_info") or {}).get("network_id"))
                for interface in a.get("interfaces") or []:
                    ref("subnet", interface.get("subnet_id"))
            elif item.kind == "security_group_rule":
                ref("security_group", a.get("remote_group_id"))
            elif item.kind == "volume":
                ref("image", (a.get("volume_image_metadata") or {}).get("image_id"))
        for key, item in items.items():
            a = item.attributes
            # Shared and external networks are usable by every tenant: always kept.
            if item.kind == "network" and (a.get("shared") or a.get("router:external")):
                keep.add(key)
        for key in keep:
            item = items[key]
            if item.tenant and item.tenant not in selected:
                owners.add(item.tenant)
        for tenant in owners:
            raw = ident.projects.get(tenant)
            if raw is not None:
                item = _project_item(raw)
                items[(item.kind, item.source_id)] = item
                keep.add((item.kind, item.source_id))
        for key in [k for k in items if k not in keep]:
            del items[key]


class _Beside:
    """A function run in its own thread; :meth:`result` waits and raises what it raised."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._failure: BaseException | None = None
        self._fn = fn
        self._thread = threading.Thread(target=self._run, name="discover-beside", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # raised again by result()
            self._failure = exc

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> None:
        self.wait()
        if self._failure is not None:
            raise self._failure


_NO_TASK = object()


class _Stopped(CloudError):
    """A read stopped because the reads running beside it failed."""


@dataclass
class _Identity:
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    limited: bool = False


def _clean(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Raw JSON minus links (server URLs that change with the endpoint, not the resource)."""
    return {k: v for k, v in raw.items() if k != "links"}


def _project_item(raw: Mapping[str, Any]) -> Item:
    return Item("project", raw["id"], raw["id"], raw.get("name"), _clean(raw))


def _user_item(raw: Mapping[str, Any], selected: set[str] | None,
               assigned: Mapping[str, set[str]]) -> Item:
    attrs = {k: v for k, v in _clean(raw).items() if "password" not in k.lower()}
    tenant = raw.get("default_project_id")
    if selected is not None and tenant not in selected:
        candidates = sorted(assigned.get(raw["id"], set()) & selected)
        tenant = candidates[0] if candidates else tenant
    return Item("user", raw["id"], tenant or None, raw.get("name"), attrs)


def _usable_network(raw: Mapping[str, Any]) -> bool:
    return bool(raw.get("shared") or raw.get("router:external"))


def _on_networks(network_ids: set[str]) -> Callable[[dict[str, Any]], bool]:
    """Whether a subnet belongs to one of ``network_ids``."""
    return lambda raw: str(raw.get("network_id")) in network_ids


def _public_kind(kind: str) -> str:
    return "router" if kind == "port" else kind


def _next_link(body: Mapping[str, Any], key: str) -> str | None:
    nxt = body.get("next")
    if isinstance(nxt, str) and nxt:
        return nxt
    for link in body.get(f"{key}_links") or []:
        if link.get("rel") == "next" and link.get("href"):
            return str(link["href"])
    return None
