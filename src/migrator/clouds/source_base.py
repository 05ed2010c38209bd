"""What the readers of a legacy cloud share (clouds/source.py's :class:`LegacySource` is made
of them): tenants and unreadable entries, the thread-safe item collector, paginated
listings, per-tenant credentials and the worker threads of the per-owner reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from migrator.clouds.connection import CloudHandle, open_cloud
from migrator.clouds.errors import CloudCallError
from migrator.errors import CloudError
from migrator.store.inventory import Item

GIB = 1 << 30
KEYPAIR_MICROVERSION = "2.10"
DEFAULT_PAGE_SIZE = 1000
DEFAULT_WORKERS = 8
KINDS = ("domain", "project", "user", "role", "role_assignment", "quota", "flavor",
         "network", "subnet", "router", "security_group", "security_group_rule", "keypair",
         "image", "volume", "server")
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


class Collector:
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

    def merge(self, other: Collector) -> None:
        """``other``'s items and unreadable entries, after this one's."""
        self.add_all(other.items.values())
        for entry in other.unreadable:
            self.denied(entry)

    def denied(self, entry: Unreadable) -> None:
        with self._lock:
            if entry not in self.unreadable:
                self.unreadable.append(entry)


@dataclass
class Identity:
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    limited: bool = False


class SourceBase:
    """What every reader of a legacy cloud shares (see :class:`LegacySource`).

    ``tenant_credentials`` maps a tenant (name or id) to the clouds.yaml name of credentials
    scoped to it; they are opened lazily, sharing ``admin``'s call counter.
    """

    def __init__(self, admin: CloudHandle, *,
                 tenant_credentials: Mapping[str, str] | None = None,
                 workers: int = DEFAULT_WORKERS, page_size: int = DEFAULT_PAGE_SIZE,
                 progress: Progress | None = None,
                 known_images: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.admin = admin
        # image id -> its attributes in the previous snapshot (what its bytes were)
        self.known_images = dict(known_images or {})
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
            link = next_link(body, key)
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
                    handle.lean_reads = self.admin.lean_reads
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
            raise Stopped(f"cloud {self.cloud}: discovery stopped: a concurrent read failed")

    def _per_tenant_lists(self, selected: Sequence[Tenant], kind: str, service: str,
                          path: str, key: str, params: Mapping[str, Any], out: Collector,
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
                out.denied(Unreadable(tenant.id, tenant.name, public_kind(kind),
                                      self._no_handle_reason(tenant)))
                return
            try:
                entries = self.list_all(handle, service, path, key, params)
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                out.denied(Unreadable(tenant.id, tenant.name, public_kind(kind),
                                      f"HTTP {exc.status} with the tenant's credentials"))
                return
            with lock:
                for raw in entries:
                    holder = tenant_of(raw, *owner)
                    if holder is None and owner == ("os-vol-tenant-attr:tenant_id",):
                        raw = {**raw, "os-vol-tenant-attr:tenant_id": tenant.id}
                        holder = tenant.id
                    if holder == tenant.id or (keep_foreign is not None and keep_foreign(raw)):
                        found.setdefault(str(raw["id"]), raw)

        self._map(one, selected)
        return list(found.values())


class Beside:
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


class Stopped(CloudError):
    """A read stopped because the reads running beside it failed."""


def tenant_of(raw: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = raw.get(key)
        if value:
            return str(value)
    return None


def clean(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Raw JSON minus links (server URLs that change with the endpoint, not the resource)."""
    return {k: v for k, v in raw.items() if k != "links"}


def public_kind(kind: str) -> str:
    return "router" if kind == "port" else kind


def next_link(body: Mapping[str, Any], key: str) -> str | None:
    nxt = body.get("next")
    if isinstance(nxt, str) and nxt:
        return nxt
    for link in body.get(f"{key}_links") or []:
        if link.get("rel") == "next" and link.get("href"):
            return str(link["href"])
    return None
