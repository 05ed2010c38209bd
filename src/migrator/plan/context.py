"""The planner's working state: the inventory indexed once, the selection, the target's names,
and the steps being built.

Everything the rules look up is a dict lookup (no query per step), so planning is linear in
the size of the inventory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from migrator.config_schema import Config
from migrator.plan.kinds import KindSelection, select_kinds
from migrator.plan.model import KIND_ORDER, PlanStep, step_key
from migrator.plan.target_names import TargetEntry, TargetNames
from migrator.spec import Lookup, Spec
from migrator.store.inventory import Item


class Inventory:
    """A snapshot's items by kind and source id, plus the few reverse indexes the rules use."""

    def __init__(self, items: Iterable[Item], snapshot_id: int) -> None:
        self.snapshot_id = snapshot_id
        self.by_kind: dict[str, dict[str, Item]] = defaultdict(dict)
        for item in items:
            self.by_kind[item.kind][item.source_id] = item
        self.project_names = {pid: (p.name or pid) for pid, p in self.by_kind["project"].items()}
        self.domain_names = {did: (d.name or did) for did, d in self.by_kind["domain"].items()}
        self.role_names = {rid: (r.name or rid) for rid, r in self.by_kind["role"].items()}

    def kind(self, kind: str) -> dict[str, Item]:
        return self.by_kind.get(kind, {})

    def get(self, kind: str, source_id: Any) -> Item | None:
        if source_id is None:
            return None
        return self.by_kind.get(kind, {}).get(str(source_id))

    def tenant_name(self, tenant_id: str | None) -> str:
        if tenant_id is None:
            return "-"
        return self.project_names.get(tenant_id, tenant_id)


@dataclass(frozen=True)
class Mapped:
    """A reference resolved to something that already exists on the target."""

    name: str  # target name
    id: str | None  # target id, when the target was checked


@dataclass
class PlanState:
    config: Config
    inventory: Inventory
    names: TargetNames
    tenants: dict[str, int]  # selected (and pulled-in) project ids -> wave
    include_dependencies: bool
    kinds: KindSelection = field(default_factory=lambda: select_kinds((), ()))
    steps: dict[str, PlanStep] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # resolved mappings, as written in the plan
    resolved: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    # tenants a reference needs that are not selected (pulled in on the next pass)
    needed_tenants: set[str] = field(default_factory=set)
    # legacy user id -> the tenant its step is filed under
    user_tenants: dict[str, str] = field(default_factory=dict)
    _networks: dict[str, list[TargetEntry]] | None = None
    _mapped: dict[str, Mapped | None] = field(default_factory=dict)

    # -- steps -----------------------------------------------------------------------------
    def add(self, kind: str, source_id: str, *, tenant_id: str | None, name: str | None,
            attrs: Mapping[str, Any], refs: Mapping[str, Any] | None = None,
            lookup: Lookup | None = None, after: Iterable[str] = (),
            source_name: str | None = None, source_ref: str | None = None) -> str:
        key = step_key(kind, source_id)
        refs = {k: v for k, v in (refs or {}).items() if v is not None}
        depends: list[str] = []
        for dep in [*_ref_keys(refs), *after]:
            if dep and dep != key and dep not in depends:
                depends.append(dep)
        spec: Spec = {
            "attrs": dict(attrs),
            "refs": refs,
            "lookup": lookup.copy() if lookup else Lookup(),
            "source": {"cloud": self.config.source.cloud, "id": source_ref or source_id,
                       "name": source_name if source_name is not None else name},
        }
        self.steps[key] = PlanStep(key=key, kind=kind,
                                   tenant=self.inventory.tenant_name(tenant_id)
                                   if tenant_id else None,
                                   source_id=source_id, name=name,
                                   wave=self.tenants.get(tenant_id or "", 1), depends_on=depends,
                                   spec=spec)
        return key

    def has(self, kind: str, source_id: str) -> bool:
        return step_key(kind, source_id) in self.steps

    def key_if(self, kind: str, source_id: str) -> str | None:
        key = step_key(kind, source_id)
        return key if key in self.steps else None

    def selected(self, item: Item) -> bool:
        return item.tenant is not None and item.tenant in self.tenants

    def owned(self, kind: str) -> Iterator[tuple[str, Item, str, str]]:
        """``(source id, item, owner project id, the owner's project step key)`` of every
        selected item of ``kind`` whose project is planned, in source id order."""
        for source_id, item in sorted(self.inventory.kind(kind).items()):
            if not self.selected(item):
                continue
            tenant = str(item.tenant)
            project_key = self.key_if("project", tenant)
            if project_key is not None:
                yield source_id, item, tenant, project_key

    def error(self, message: str) -> None:
        self.errors.append(message)

    def ordered_steps(self) -> list[PlanStep]:
        return sorted(self.steps.values(),
                      key=lambda s: (s.wave, s.tenant or "", KIND_ORDER[s.kind], s.name or "",
                                     s.source_id))

    # -- references ------------------------------------------------------------------------
    def not_selected(self, what: str, tenant_id: str | None, ref_kind: str, ref: Item,
                     mapping: str | None = None) -> None:
        """A reference to a resource of a tenant that is not selected."""
        owner = ref.tenant or ""
        if self.include_dependencies and owner:
            self.needed_tenants.add(owner)
            return
        owner_name = self.inventory.tenant_name(owner)
        ways = (f"select {owner_name}, pass --include-dependencies, or map it in {mapping}"
                if mapping else f"select {owner_name} or pass --include-dependencies")
        label = ref_kind.replace("_", " ")
        self.error(f"{what} of tenant {self.inventory.tenant_name(tenant_id)} refers to {label} "
                   f"{ref.name or ref.source_id} ({ref.source_id}) of tenant {owner_name}, "
                   f"which is not selected; {ways}")

    def missing(self, what: str, tenant_id: str | None, ref_kind: str, ref_id: Any) -> None:
        self.error(f"{what} of tenant {self.inventory.tenant_name(tenant_id)} refers to "
                   f"{ref_kind.replace('_', ' ')} {ref_id}, which is not in inventory snapshot "
                   f"{self.inventory.snapshot_id}; discover again including its owner")

    # -- target names ----------------------------------------------------------------------
    def target_networks(self) -> dict[str, list[TargetEntry]]:
        if self._networks is None:
            self._networks = self.names.networks()
        return self._networks

    def mapped_network(self, net: Item) -> Mapped | None:
        """The target network a legacy network maps to (external or shared mappings, or a
        same-named external network on the target), None when it is to be migrated."""
        if net.source_id not in self._mapped:
            self._mapped[net.source_id] = self._map_network(net)
        return self._mapped[net.source_id]

    def _map_network(self, net: Item) -> Mapped | None:
        name = net.name or net.source_id
        attrs = net.attributes
        maps = self.config.mappings
        target_name: str | None = None
        section = ""
        if attrs.get("router:external") and name in maps.external_networks:
            target_name, section = maps.external_networks[name], "external_networks"
        elif name in maps.shared_networks:
            target_name, section = maps.shared_networks[name], "shared_networks"
        elif name in maps.external_networks:
            target_name, section = maps.external_networks[name], "external_networks"
        if target_name is None and attrs.get("router:external") and self.names.checked:
            same = [e for e in self.target_networks().get(name, []) if e.external]
            if same:
                target_name, section = name, "external_networks"
        if target_name is None:
            return None
        target_id: str | None = None
        if self.names.checked:
            found = self.target_networks().get(target_name, [])
            if not found:
                self.error(f"mappings.{section}: legacy network {name} maps to {target_name!r}, "
                           "which does not exist on the target")
                return Mapped(target_name, None)
            target_id = found[0].id
        self.resolved[section][name] = {"target": target_name, **(
            {"id": target_id} if target_id else {})}
        return Mapped(target_name, target_id)


def _ref_keys(refs: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for value in refs.values():
        if isinstance(value, list):
            out.extend(str(v) for v in value)
        elif value is not None:
            out.append(str(value))
    return out
