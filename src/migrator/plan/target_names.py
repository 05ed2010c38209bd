"""What the planner needs to know about the target: names that exist there, read in bulk.

:class:`TargetNames` is the small interface the planner asks (a few LIST calls in total,
whatever the plan's size): domains, projects, users and networks by name with the source id
they carry when migrator created them (``None``: not ours, so a name clash), roles, subnet
pools, subnets of a network, the services of its catalog. :class:`CloudTargetNames` answers
it from the target cloud through :class:`~migrator.clouds.target.TargetCloud`
(openstacksdk); :class:`OfflineTarget` answers "nothing there" for planning without the
target (the plan records ``target.checked: false`` and ``execute`` checks against the target
before it starts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from migrator.clouds.target_base import catalog_types, migrated_source_id
from migrator.plan.kinds import catalog_service


@dataclass(frozen=True)
class TargetEntry:
    id: str
    name: str
    source_id: str | None  # the source id migrator marked it with; None: not created by us
    project_id: str | None = None
    external: bool = False
    shared: bool = False
    cidr: str | None = None
    network_id: str | None = None


class TargetNames(Protocol):
    checked: bool

    def domain_id(self, name_or_id: str) -> str | None: ...

    def projects(self, domain_id: str) -> dict[str, TargetEntry]: ...

    def users(self, domain_id: str) -> dict[str, TargetEntry]: ...

    def networks(self) -> dict[str, list[TargetEntry]]: ...

    def subnets(self) -> list[TargetEntry]: ...

    def roles(self) -> dict[str, str]: ...

    def subnet_pool(self, name: str) -> TargetEntry | None: ...

    def volume_types(self) -> dict[str, str]: ...

    def services(self) -> set[str] | None: ...


class OfflineTarget:
    """No target to ask: nothing exists, the default domain is ``default``, roles and pools
    are resolved by name when the steps run."""

    checked = False

    def domain_id(self, name_or_id: str) -> str | None:
        return "default" if name_or_id.lower() == "default" else name_or_id

    def projects(self, domain_id: str) -> dict[str, TargetEntry]:
        return {}

    def users(self, domain_id: str) -> dict[str, TargetEntry]:
        return {}

    def networks(self) -> dict[str, list[TargetEntry]]:
        return {}

    def subnets(self) -> list[TargetEntry]:
        return []

    def roles(self) -> dict[str, str]:
        return {}

    def subnet_pool(self, name: str) -> TargetEntry | None:
        return None

    def volume_types(self) -> dict[str, str]:
        return {}

    def flavors(self) -> dict[str, str]:
        return {}

    def services(self) -> set[str] | None:
        return None


class CloudTargetNames:
    """The target cloud's names, each listing read once (memoised)."""

    checked = True

    def __init__(self, target: Any) -> None:
        self.tc = target  # a TargetCloud
        self._cache: dict[str, Any] = {}

    def _get(self, service: str, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        cache_key = f"{service}{path}{sorted(params.items())}"
        if cache_key not in self._cache:
            body = self.tc.request(service, "GET", path, op="list", what=path.strip("/"),
                                   params=params or None)
            self._cache[cache_key] = list(body[key])
        return list(self._cache[cache_key])

    def domain_id(self, name_or_id: str) -> str | None:
        for domain in self._get("identity", "/domains", "domains"):
            if name_or_id in (domain.get("id"), domain.get("name")):
                return str(domain["id"])
        return None

    def projects(self, domain_id: str) -> dict[str, TargetEntry]:
        return {str(p["name"]): TargetEntry(str(p["id"]), str(p["name"]), migrated_source_id(p))
                for p in self._get("identity", "/projects", "projects", domain_id=domain_id)}

    def users(self, domain_id: str) -> dict[str, TargetEntry]:
        return {str(u["name"]): TargetEntry(str(u["id"]), str(u["name"]), migrated_source_id(u))
                for u in self._get("identity", "/users", "users", domain_id=domain_id)}

    def networks(self) -> dict[str, list[TargetEntry]]:
        out: dict[str, list[TargetEntry]] = {}
        for n in self._get("network", "/networks", "networks"):
            out.setdefault(str(n.get("name") or ""), []).append(TargetEntry(
                str(n["id"]), str(n.get("name") or ""), migrated_source_id(n),
                project_id=n.get("project_id") or n.get("tenant_id"),
                external=bool(n.get("router:external")), shared=bool(n.get("shared"))))
        return out

    def subnets(self) -> list[TargetEntry]:
        return [TargetEntry(str(s["id"]), str(s.get("name") or ""), migrated_source_id(s),
                            network_id=str(s.get("network_id")), cidr=s.get("cidr"))
                for s in self._get("network", "/subnets", "subnets")]

    def roles(self) -> dict[str, str]:
        return {str(r["name"]): str(r["id"]) for r in self._get("identity", "/roles", "roles")}

    def subnet_pool(self, name: str) -> TargetEntry | None:
        for pool in self._get("network", "/subnetpools", "subnetpools"):
            if pool.get("name") == name:
                return TargetEntry(str(pool["id"]), name, None)
        return None

    def services(self) -> set[str] | None:
        """The services of the target's catalog (identity, image, volume, compute,
        network), read from the token once."""
        if "services" not in self._cache:
            types = catalog_types(getattr(self.tc, "conn", self.tc))
            self._cache["services"] = {s for s in map(catalog_service, types) if s}
        return set(self._cache["services"])

    def volume_types(self) -> dict[str, str]:
        """Volume type name -> id (the types the admin sees, private ones included)."""
        return {str(t["name"]): str(t["id"]) for t in self._get(
            "block_storage", "/types", "volume_types", is_public="None")}

    def flavors(self) -> dict[str, str]:
        """Flavor name -> id (public and private ones the admin sees)."""
        return {str(f["name"]): str(f["id"]) for f in self._get(
            "compute", "/flavors/detail", "flavors", is_public="None")}
