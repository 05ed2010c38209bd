"""The target read with list calls: one listing per kind instead of one GET per resource.

``ListingMixin`` adds the ``list_<kind>s`` verbs to the target adapter (every project, user,
role assignment, network, subnet, router, router port, security group and rule, image and
volume the admin sees; Glance's and Cinder's pages followed). :class:`ListedTarget` is a
TargetCloud whose ``get_<kind>`` and ``has_project_role`` answer from those listings (each
read once, on first use), so that ``migrator verify`` can reuse the handlers' read-back
checks on a run of any size with a handful of calls; a resource the listing does not hold is
a NotFoundError, as a 404 would be.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from migrator.clouds.target_base import TargetBase

MAX_PAGES = 10_000  # a listing that never ends is a server bug, not a reason to loop forever


class ListingMixin(TargetBase):
    def list_projects(self) -> list[dict[str, Any]]:
        return self._listed("identity", "/projects", "projects")

    def list_users(self) -> list[dict[str, Any]]:
        return self._listed("identity", "/users", "users")

    def list_role_assignments(self) -> list[dict[str, Any]]:
        """Project role assignments of users: ``{user: {id}, scope: {project: {id}},
        role: {id}}`` (Keystone v3's own shape)."""
        return self._listed("identity", "/role_assignments", "role_assignments")

    def list_networks(self) -> list[dict[str, Any]]:
        return self._listed("network", "/networks", "networks")

    def list_subnets(self) -> list[dict[str, Any]]:
        return self._listed("network", "/subnets", "subnets")

    def list_routers(self) -> list[dict[str, Any]]:
        return self._listed("network", "/routers", "routers")

    def list_router_ports(self) -> list[dict[str, Any]]:
        """The ports of router interfaces (not gateways)."""
        return self._listed("network", "/ports", "ports",
                            {"device_owner": "network:router_interface"})

    def list_security_groups(self) -> list[dict[str, Any]]:
        return self._listed("network", "/security-groups", "security_groups")

    def list_security_group_rules(self) -> list[dict[str, Any]]:
        return self._listed("network", "/security-group-rules", "security_group_rules")

    def list_images(self) -> list[dict[str, Any]]:
        """Every image of every project (``visibility=all``), Glance's pages followed."""
        return list(self._pages("image", "/images", "images", {"visibility": "all"}))

    def list_volumes(self) -> list[dict[str, Any]]:
        """Every volume of every project (``all_tenants``), Cinder's pages followed."""
        return list(self._pages("block_storage", "/volumes/detail", "volumes",
                                {"all_tenants": 1}))

    def list_volume_types(self) -> list[dict[str, Any]]:
        return self._listed("block_storage", "/types", "volume_types")

    # -- plumbing ------------------------------------------------------------------------
    def _listed(self, service: str, path: str, key: str,
                params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        body = self.request(service, "GET", path, op=f"list {key.replace('_', ' ')}", what="",
                            params=params)
        return [dict(item) for item in (body or {}).get(key) or []]

    def _pages(self, service: str, path: str, key: str, params: Mapping[str, Any]
               ) -> Iterator[dict[str, Any]]:
        url: str | None = path
        query: Mapping[str, Any] | None = params
        for _ in range(MAX_PAGES):
            if url is None:
                return
            page = self.request(service, "GET", url, op=f"list {key}", what="",
                                params=query) or {}
            yield from (dict(item) for item in page.get(key) or [])
            url, query = _next_page(page, key), None
        raise RuntimeError(f"{self.name}: listing {key} gave more than {MAX_PAGES} pages")


def _next_page(page: Mapping[str, Any], key: str) -> str | None:
    """Glance's ``next`` (a path below the version: ``/v2/images?marker=``) or Cinder's
    ``volumes_links`` (a full URL; the SDK's proxy takes it as it is)."""
    nxt = page.get("next")
    if isinstance(nxt, str) and nxt:
        return "/" + nxt.split("/v2/", 1)[1] if "/v2/" in nxt else nxt
    for link in page.get(f"{key}_links") or []:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            return str(link["href"])
    return None


class ListedMixin(ListingMixin):
    """``get_<kind>`` from the listings (read once each, thread-safe); see the module doc."""

    _listing_lock: threading.Lock
    _listings: dict[str, dict[str, dict[str, Any]]]
    _assignments: set[tuple[str, str, str]] | None

    def _index(self, kind: str, read: Callable[[], list[dict[str, Any]]]
               ) -> dict[str, dict[str, Any]]:
        if not hasattr(self, "_listings"):
            self._listings, self._listing_lock, self._assignments = {}, threading.Lock(), None
        with self._listing_lock:
            found = self._listings.get(kind)
            if found is None:
                found = self._listings[kind] = {str(r["id"]): r for r in read()}
            return found

    def _listed_one(self, kind: str, read: Callable[[], list[dict[str, Any]]], rid: str
                    ) -> dict[str, Any]:
        found = self._index(kind, read).get(rid)
        if found is None:
            raise self.not_found(kind.replace("_", " "), rid, self.name)
        return dict(found)

    def get_project(self, project_id: str) -> dict[str, Any]:
        return self._listed_one("project", self.list_projects, project_id)

    def get_user(self, user_id: str) -> dict[str, Any]:
        return self._listed_one("user", self.list_users, user_id)

    def get_network(self, network_id: str) -> dict[str, Any]:
        return self._listed_one("network", self.list_networks, network_id)

    def get_subnet(self, subnet_id: str) -> dict[str, Any]:
        return self._listed_one("subnet", self.list_subnets, subnet_id)

    def get_router(self, router_id: str) -> dict[str, Any]:
        return self._listed_one("router", self.list_routers, router_id)

    def get_port(self, port_id: str) -> dict[str, Any]:
        return self._listed_one("port", self.list_router_ports, port_id)

    def get_security_group(self, group_id: str) -> dict[str, Any]:
        return self._listed_one("security_group", self.list_security_groups, group_id)

    def get_security_group_rule(self, rule_id: str) -> dict[str, Any]:
        return self._listed_one("security_group_rule", self.list_security_group_rules,
                                rule_id)

    def get_image_record(self, image_id: str) -> dict[str, Any] | None:
        return self._index("image", self.list_images).get(image_id)

    def get_volume_record(self, volume_id: str) -> dict[str, Any] | None:
        return self._index("volume", self.list_volumes).get(volume_id)

    def has_project_role(self, project_id: str, user_id: str, role_id: str) -> bool:
        self._index("role_assignment", lambda: [])  # makes the lock
        with self._listing_lock:
            if self._assignments is None:
                self._assignments = {
                    (str((ra.get("scope") or {}).get("project", {}).get("id")),
                     str((ra.get("user") or {}).get("id")), str((ra.get("role") or {}).get("id")))
                    for ra in self.list_role_assignments()}
            return (project_id, user_id, role_id) in self._assignments
