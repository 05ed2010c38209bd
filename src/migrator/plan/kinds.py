"""Which step kinds a plan holds: what the operator selects (``selection.kinds``,
``selection.exclude_kinds``, ``plan --kinds/--exclude-kinds``), what each kind needs, and what
the target's catalog offers.

- A kind needs the kinds its steps refer to (:data:`REQUIRES`: a subnet its network, an
  image its owner's project...). Selecting a kind selects what it needs; excluding a kind
  excludes what needs it. An explicitly selected kind that needs an excluded one is refused.
- A kind needs services on the target (:data:`SERVICES`: a network Neutron, a volume Cinder
  and Glance for its temporary image). When the target's catalog lacks one, the kinds that
  need it are left out of a plan that did not ask for them by name (a warning says so), and
  a plan that did is refused in one line naming the service and the kinds. Quota steps are
  per service: those of a service the target lacks are not planned.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from migrator.errors import PlanError
from migrator.plan.model import KINDS

# kind -> the kinds its steps refer to (spec.refs): a plan holding it must hold them.
REQUIRES: dict[str, tuple[str, ...]] = {
    "project": (),
    "quota": ("project",),
    "user": (),  # its default project only when that project is planned
    "role_assignment": ("user", "project"),
    "network": ("project",),
    "subnet": ("network",),
    "router": ("project",),
    "router_interface": ("router", "subnet"),
    "security_group": ("project",),
    "security_group_rule": ("security_group",),
    "keypair": ("user",),
    "image": ("project",),
    "image_member": ("image", "project"),
    "volume": ("project",),
    # its ports' subnets, its groups, its owner (who boots it: roles on the project) and
    # the owner's key, its attached volumes (moved by it)
    "server": ("project", "subnet", "security_group", "role_assignment", "keypair",
               "volume"),
}

# kind -> the target services (catalog, see catalog_service) its handler calls.
SERVICES: dict[str, tuple[str, ...]] = {
    "project": ("identity",),
    "quota": ("identity",),  # and the quota's own service, per step
    "user": ("identity",),
    "role_assignment": ("identity",),
    "network": ("network",),
    "subnet": ("network",),
    "router": ("network",),
    "router_interface": ("network",),
    "security_group": ("network",),
    "security_group_rule": ("network",),
    "keypair": ("compute",),
    "image": ("image",),
    "image_member": ("image",),
    # the bytes go through a temporary image on the target's Glance
    "volume": ("volume", "image"),
    # a snapshot image, its volumes through the volume path, its ports
    "server": ("compute", "image", "network", "volume"),
}

# The service a quota step (source id "<service>:<project>") sets its values through.
QUOTA_SERVICES = {"compute": "compute", "volume": "volume", "network": "network"}

# Catalog types (and openstacksdk's aliases) -> the service names used here.
CATALOG_ALIASES = {"block-storage": "volume", "block-store": "volume", "volumev2": "volume",
                   "volumev3": "volume", "volume": "volume", "compute": "compute",
                   "network": "network", "image": "image", "identity": "identity"}


def catalog_service(service_type: str) -> str | None:
    """The service name of a catalog entry's type (None: one migrator does not use)."""
    return CATALOG_ALIASES.get(service_type)


def parse_kinds(values: Iterable[str], where: str) -> list[str]:
    """Kind names from a list whose entries may be comma-separated (``--kinds a,b``), in
    :data:`KINDS` order; a PlanError naming ``where`` for an unknown one."""
    out: set[str] = set()
    for value in values:
        for name in (part.strip() for part in str(value).split(",")):
            if not name:
                continue
            if name not in REQUIRES:
                raise PlanError(f"{where}: unknown kind {name!r} (known: {', '.join(KINDS)})")
            out.add(name)
    return [k for k in KINDS if k in out]


@dataclass(frozen=True)
class KindSelection:
    kinds: frozenset[str]  # the kinds planned
    requested: tuple[str, ...]  # as asked (empty: all)
    excluded: tuple[str, ...]
    added: tuple[str, ...] = ()  # needed by a requested kind
    left_out: dict[str, str] = field(default_factory=dict)  # kind -> why
    services: frozenset[str] | None = None  # the target's, when read

    def wants(self, kind: str) -> bool:
        return kind in self.kinds

    def quota_wanted(self, service: str) -> bool:
        """Whether quota steps of ``service`` (compute, volume, network) are planned."""
        if "quota" not in self.kinds:
            return False
        needed = QUOTA_SERVICES.get(service)
        return self.services is None or needed is None or needed in self.services

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kinds": [k for k in KINDS if k in self.kinds]}
        if self.requested:
            out["requested_kinds"] = list(self.requested)
        if self.excluded:
            out["exclude_kinds"] = list(self.excluded)
        if self.added:
            out["kinds_added"] = list(self.added)
        if self.left_out:
            out["kinds_left_out"] = {k: self.left_out[k] for k in KINDS if k in self.left_out}
        return out

    def warnings(self) -> list[str]:
        out = []
        missing: dict[str, list[str]] = {}
        for kind, why in self.left_out.items():
            if why.startswith("no "):
                missing.setdefault(why, []).append(kind)
        for why, kinds in sorted(missing.items()):
            kinds.sort(key=KINDS.index)
            out.append(f"the target has {why} in its catalog: kind(s) {', '.join(kinds)} not "
                       "planned")
        if self.services is not None and "quota" in self.kinds:
            absent = [s for s, needed in QUOTA_SERVICES.items() if needed not in self.services]
            if absent:
                out.append(f"the target has no {' or '.join(absent)} service in its catalog: "
                           f"{', '.join(absent)} quotas not planned")
        return out


def _dependents(kind: str) -> list[str]:
    return [k for k, needs in REQUIRES.items() if kind in needs]


def _closure(kinds: Iterable[str]) -> set[str]:
    out: set[str] = set()
    todo = list(kinds)
    while todo:
        kind = todo.pop()
        if kind not in out:
            out.add(kind)
            todo.extend(REQUIRES[kind])
    return out


def _needing(kind: str) -> set[str]:
    """``kind`` and every kind that needs it, directly or not."""
    out: set[str] = set()
    todo = [kind]
    while todo:
        current = todo.pop()
        if current not in out:
            out.add(current)
            todo.extend(_dependents(current))
    return out


def select_kinds(requested: Sequence[str], excluded: Sequence[str],
                 services: Collection[str] | None = None, *, cloud: str = "target"
                 ) -> KindSelection:
    """The kinds to plan. ``requested`` empty: every kind. ``services``: the service names of
    the target's catalog (None: not read, e.g. ``--offline``)."""
    explicit = set(requested)
    kinds = _closure(requested) if requested else set(KINDS)
    added = tuple(k for k in KINDS if k in kinds and k not in explicit) if requested else ()
    left_out: dict[str, str] = {}
    for kind in excluded:
        for gone in sorted(_needing(kind) & kinds, key=KINDS.index):
            if gone in explicit and gone != kind:
                raise PlanError(f"selection: kind {gone} is selected but needs {kind}, which "
                                "is excluded; select it or exclude both")
            if gone in explicit:
                raise PlanError(f"selection: kind {kind} is both selected and excluded")
            kinds.discard(gone)
            left_out[gone] = "excluded" if gone == kind else f"needs {kind} (excluded)"
    available = set(services) if services is not None else None
    if available is not None:
        by_service: dict[str, list[str]] = {}
        for kind in [k for k in KINDS if k in kinds]:
            for service in SERVICES[kind]:
                if service not in available:
                    by_service.setdefault(service, []).append(kind)
        for service, needing in sorted(by_service.items()):
            asked = [k for k in needing if k in explicit]
            if asked:
                raise PlanError(
                    f"the target cloud {cloud} has no {service} service in its catalog, which "
                    f"kind(s) {', '.join(needing)} need; leave them out (--exclude-kinds "
                    f"{','.join(needing)})")
            for kind in needing:
                for gone in sorted(_needing(kind) & kinds, key=KINDS.index):
                    if gone in explicit:
                        raise PlanError(
                            f"the target cloud {cloud} has no {service} service in its "
                            f"catalog: kind {gone} is selected but needs {kind}, which needs "
                            f"it")
                    kinds.discard(gone)
                    left_out.setdefault(gone, f"no {service} service")
    return KindSelection(frozenset(kinds), tuple(k for k in KINDS if k in explicit),
                         tuple(k for k in KINDS if k in set(excluded)), added, left_out,
                         frozenset(available) if available is not None else None)


def service_problems(steps: Iterable[object], services: Collection[str], cloud: str
                     ) -> list[str]:
    """A plan's steps against the target's catalog (a plan made ``--offline``, or a catalog
    that changed since): one line per service it lacks, naming the kinds that need it."""
    needing: dict[str, dict[str, int]] = {}
    for step in steps:
        kind = str(getattr(step, "kind", ""))
        wanted = list(SERVICES.get(kind, ()))
        if kind == "quota":
            own = QUOTA_SERVICES.get(str(getattr(step, "source_id", "")).partition(":")[0])
            if own:
                wanted.append(own)
        for service in wanted:
            if service not in services:
                per_kind = needing.setdefault(service, {})
                per_kind[kind] = per_kind.get(kind, 0) + 1
    out = []
    for service, per_kind in sorted(needing.items()):
        kinds = [k for k in KINDS if k in per_kind]
        out.append(f"the target cloud {cloud} has no {service} service in its catalog: "
                   f"{sum(per_kind.values())} step(s) of kind(s) {', '.join(kinds)} need it; "
                   "plan again against the target (the kinds it cannot take are left out) or "
                   f"with --exclude-kinds {','.join(k for k in kinds if k != 'quota') or 'quota'}")
    return out
