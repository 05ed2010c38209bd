"""What every simulated Neutron resource shares: rendering a stored record for the profile
(Liberty shows ``tenant_id`` only and none of the later standard attributes), who may see and
change what, list filters, ``fields=``, sorting, marker pagination with ``<resources>_links``,
quota enforcement and the per-project ``default`` security group.

Records are stored in the modern shape (``project_id``); derived lists (a network's subnets, a
security group's rules) are computed when rendering so that they can never go stale.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.http import (
    AuthContext,
    SimHTTPError,
    auth_of,
    json_response,
    origin,
    read_json,
)
from migrator.sim.state import GenerationMemo, Record, new_id, now_iso

PREFIX = "/network"
V2 = f"{PREFIX}/v2.0"
# Standard attributes that Mitaka and later added to every resource.
# Parent collection -> (child collection, the child's parent key, the parent's list key).
DERIVED = {
    "networks": ("subnets", "network_id", "subnets"),
    "security_groups": ("security_group_rules", "security_group_id", "security_group_rules"),
}
STANDARD_ATTRS = ("description", "tags", "created_at", "updated_at", "revision_number")
LIST_CONTROL_PARAMS = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"}
LIST_MEMO_SIZE = 8  # listings whose shared part is kept (see list_response)
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")
# Filters answered from the state's indexes (query key, stored field) per collection.
INDEXED_FILTERS: dict[str, tuple[tuple[str, str], ...]] = {
    "security_group_rules": (("security_group_id", "security_group_id"),
                             ("project_id", "project_id"), ("tenant_id", "project_id")),
    **{coll: (("project_id", "project_id"), ("tenant_id", "project_id"))
       for coll in ("networks", "subnets", "ports", "routers", "security_groups",
                    "floatingips")},
}
# Filters a modern listing checks on the stored record before rendering it (the rendered
# value is the stored one).
RAW_FILTERS = frozenset({"id", "name", "network_id", "device_id", "device_owner",
                         "security_group_id"})
ADMIN_ONLY_KEYS = ("provider:network_type", "provider:physical_network",
                   "provider:segmentation_id", "binding:host_id", "binding:profile",
                   "binding:vif_type", "binding:vif_details", "distributed", "ha")


@dataclass
class Listing:
    """What the pages of one listing share: the records the caller may see and the list that
    is paged (those records, or their rendered, filtered, sorted items), with each paged item's
    position by id, built on the first page that needs it (a marker lookup built it on every
    page: O(n) per page of a 20,000-record scan)."""

    visible: list[Record]
    paged: list[Record]
    _position: dict[str, int] | None = None
    _visible_by_id: dict[str, Record] | None = None

    def position(self) -> dict[str, int]:
        if self._position is None:
            self._position = {item["id"]: n for n, item in enumerate(self.paged)}
        return self._position

    def visible_by_id(self) -> dict[str, Record]:
        if self._visible_by_id is None:
            self._visible_by_id = {r["id"]: r for r in self.visible}
        return self._visible_by_id


@dataclass(frozen=True)
class Kind:
    """One Neutron resource type: where it is stored and what each profile shows of it."""

    collection: str
    member: str
    title: str                     # "Network" in "Network X could not be found."
    not_found_type: str
    quota_key: str | None
    liberty_keys: tuple[str, ...]  # attributes a Liberty server renders (plus tenant_id)
    modern_keys: tuple[str, ...]   # attributes only later releases render
    defaults: dict[str, Any] = field(default_factory=dict)
    not_found_text: str = "could not be found."

    def not_found(self, rid: str) -> SimHTTPError:
        return SimHTTPError(404, f"{self.title} {rid} {self.not_found_text}",
                            neutron_type=self.not_found_type)


NETWORKS = Kind(
    "networks", "network", "Network", "NetworkNotFound", "network",
    ("id", "name", "admin_state_up", "status", "subnets", "shared", "mtu",
     "port_security_enabled", "router:external", "provider:network_type",
     "provider:physical_network", "provider:segmentation_id"),
    ("availability_zone_hints", "availability_zones", "ipv4_address_scope",
     "ipv6_address_scope", "is_default", "l2_adjacency", "dns_domain", *STANDARD_ATTRS),
    {"admin_state_up": True, "status": "ACTIVE", "shared": False, "mtu": 1450,
     "port_security_enabled": True, "router:external": False,
     "provider:network_type": "vxlan", "provider:physical_network": None,
     "provider:segmentation_id": None, "availability_zone_hints": [],
     "availability_zones": ["nova"], "ipv4_address_scope": None, "ipv6_address_scope": None,
     "is_default": False, "l2_adjacency": True, "dns_domain": ""},
)
SUBNETS = Kind(
    "subnets", "subnet", "Subnet", "SubnetNotFound", "subnet",
    ("id", "name", "network_id", "ip_version", "subnetpool_id", "cidr", "gateway_ip",
     "allocation_pools", "dns_nameservers", "host_routes", "enable_dhcp", "ipv6_ra_mode",
     "ipv6_address_mode"),
    ("service_types", "segment_id", *STANDARD_ATTRS),
    {"subnetpool_id": None, "dns_nameservers": [], "host_routes": [], "enable_dhcp": True,
     "ipv6_ra_mode": None, "ipv6_address_mode": None, "service_types": [],
     "segment_id": None},
)
SUBNETPOOLS = Kind(
    "subnetpools", "subnetpool", "Subnet pool", "SubnetPoolNotFound", "subnetpool",
    ("id", "name", "prefixes", "default_prefixlen", "min_prefixlen", "max_prefixlen",
     "ip_version", "shared", "is_default", "default_quota", "address_scope_id"),
    STANDARD_ATTRS,
    {"shared": False, "is_default": False, "default_quota": None, "address_scope_id": None},
)
ROUTERS = Kind(
    "routers", "router", "Router", "RouterNotFound", "router",
    ("id", "name", "admin_state_up", "status", "external_gateway_info", "routes",
     "distributed", "ha"),
    ("availability_zone_hints", "availability_zones", "flavor_id", *STANDARD_ATTRS),
    {"admin_state_up": True, "status": "ACTIVE", "external_gateway_info": None,
     "routes": [], "distributed": False, "ha": False, "availability_zone_hints": [],
     "availability_zones": ["nova"], "flavor_id": None},
)
PORTS = Kind(
    "ports", "port", "Port", "PortNotFound", "port",
    ("id", "name", "network_id", "admin_state_up", "status", "mac_address", "fixed_ips",
     "device_id", "device_owner", "allowed_address_pairs", "extra_dhcp_opts",
     "security_groups", "port_security_enabled", "binding:vnic_type", "binding:host_id",
     "binding:profile", "binding:vif_type", "binding:vif_details"),
    ("dns_name", "dns_assignment", "propagate_uplink_status", *STANDARD_ATTRS),
    {"admin_state_up": True, "status": "DOWN", "device_id": "", "device_owner": "",
     "allowed_address_pairs": [], "extra_dhcp_opts": [], "security_groups": [],
     "port_security_enabled": True, "binding:vnic_type": "normal", "binding:host_id": "",
     "binding:profile": {}, "binding:vif_type": "unbound", "binding:vif_details": {},
     "dns_name": "", "dns_assignment": [], "propagate_uplink_status": False},
)
SECURITY_GROUPS = Kind(
    "security_groups", "security_group", "Security group", "SecurityGroupNotFound",
    "security_group",
    ("id", "name", "description", "security_group_rules"),
    ("stateful", "shared", "tags", "created_at", "updated_at", "revision_number"),
    {"description": "", "stateful": True, "shared": False},
    not_found_text="does not exist",
)
SECURITY_GROUP_RULES = Kind(
    "security_group_rules", "security_group_rule", "Security group rule",
    "SecurityGroupRuleNotFound", "security_group_rule",
    ("id", "security_group_id", "ethertype", "direction", "protocol", "port_range_min",
     "port_range_max", "remote_ip_prefix", "remote_group_id"),
    ("remote_address_group_id", "normalized_cidr", "belongs_to_default_sg", "description",
     "created_at", "updated_at", "revision_number"),
    {"protocol": None, "port_range_min": None, "port_range_max": None,
     "remote_ip_prefix": None, "remote_group_id": None, "remote_address_group_id": None,
     "normalized_cidr": None, "description": ""},
    not_found_text="does not exist",
)
FLOATINGIPS = Kind(
    "floatingips", "floatingip", "Floating IP", "FloatingIPNotFound", "floatingip",
    ("id", "floating_ip_address", "floating_network_id", "router_id", "port_id",
     "fixed_ip_address", "status"),
    STANDARD_ATTRS,
    {"router_id": None, "port_id": None, "fixed_ip_address": None, "status": "DOWN"},
)
KINDS = (NETWORKS, SUBNETS, SUBNETPOOLS, ROUTERS, PORTS, SECURITY_GROUPS,
         SECURITY_GROUP_RULES, FLOATINGIPS)
LIBERTY_QUOTAS = {"network": 10, "subnet": 10, "subnetpool": -1, "port": 50, "router": 10,
                  "floatingip": 50, "security_group": 10, "security_group_rule": 100}
MODERN_QUOTAS = {"network": 100, "subnet": 100, "subnetpool": -1, "port": 500, "router": 10,
                 "floatingip": 50, "security_group": 10, "security_group_rule": 100,
                 "rbac_policy": 10}


def policy_denied(liberty: bool, rule: str) -> SimHTTPError:
    message = (f"Policy doesn't allow {rule} to be performed." if liberty
               else f"(rule:{rule}) is disallowed by policy")
    return SimHTTPError(403, message, neutron_type="PolicyNotAuthorized")


def bad_request(message: str) -> SimHTTPError:
    return SimHTTPError(400, message, neutron_type="HTTPBadRequest")


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise SimHTTPError(400, f"Invalid input for operation: '{value}' cannot be converted "
                       "to boolean.", neutron_type="InvalidInput")


class NeutronCore:
    """State access and the behaviour every resource handler shares."""

    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.liberty = not cloud.profile.neutron_project_id
        self.rng = random.Random(f"neutron:{cloud.name}")
        self._list_memo: GenerationMemo[Listing] = GenerationMemo(self.state,
                                                                  LIST_MEMO_SIZE)

    # -- rendering ---------------------------------------------------------------------------
    def render(self, kind: Kind, rec: Record, ctx: AuthContext, *, derive: bool = True,
               children: dict[str, list[Record]] | None = None) -> dict[str, Any]:
        """``rec`` as the API shows it to ``ctx``. ``derive`` adds the child lists (a network's
        subnets, a group's rules) from ``children`` (parent id -> child records, built once
        per listing) or, for a single resource, from the state's index of the children by
        parent."""
        derived: dict[str, Any] = {}
        if derive and kind.collection in DERIVED:
            child_coll, parent_key, out_key = DERIVED[kind.collection]
            kids = (children.get(rec["id"], []) if children is not None else
                    self.state.where(child_coll, parent_key, rec["id"]))
            derived[out_key] = ([c["id"] for c in kids] if out_key == "subnets" else
                                [self.render(SECURITY_GROUP_RULES, c, ctx) for c in kids])
        out: dict[str, Any]
        if self.liberty:
            # Only Liberty's attributes are looked up (derived list, else stored, else default),
            # in their order: building every stored attribute and then filtering took twice as
            # long for a port, 3.5 times for a group with its 4 rules (18 -> 5 us, 20,000
            # groups per discovery).
            defaults = kind.defaults
            out = {}
            for key in kind.liberty_keys:
                if key in derived:
                    out[key] = derived[key]
                elif key in rec:
                    out[key] = rec[key]
                elif key in defaults:
                    out[key] = defaults[key]
            out["tenant_id"] = rec.get("project_id")
        else:
            out = dict(kind.defaults)
            out.update({k: v for k, v in rec.items() if not k.startswith("_")})
            out.update(derived)
            project = out.pop("project_id", None)
            out.pop("tenant_id", None)
            for key in STANDARD_ATTRS:
                if key in kind.modern_keys:
                    out.setdefault(key, [] if key == "tags" else
                                   0 if key == "revision_number" else "")
            out["tenant_id"] = project
            out["project_id"] = project
        if not ctx.is_admin:
            for key in ADMIN_ONLY_KEYS:
                out.pop(key, None)
        return out

    def children_of(self, kind: Kind, parent_ids: set[str]) -> dict[str, list[Record]]:
        """Child records of the given parents, from the state's index of the child collection
        by parent (a subnet's network, a rule's group: kept by put and delete), so paging
        through 20,000 groups does not scan 90,000 rules per page, nor does a listing after
        each write."""
        child_coll, parent_key, _ = DERIVED[kind.collection]
        return {pid: self.state.where(child_coll, parent_key, pid) for pid in parent_ids}

    def known_attributes(self, kind: Kind) -> set[str]:
        keys = set(kind.liberty_keys) | {"tenant_id"}
        if not self.liberty:
            keys |= set(kind.modern_keys) | {"project_id"}
        return keys

    # -- visibility and ownership ------------------------------------------------------------
    def visible(self, kind: Kind, rec: Record, ctx: AuthContext) -> bool:
        if ctx.is_admin or rec.get("project_id") == ctx.project_id:
            return True
        if kind is NETWORKS:
            return bool(rec.get("shared") or rec.get("router:external"))
        if kind is SUBNETS:
            net = self.state.get("networks", rec.get("network_id", ""))
            return bool(net and net.get("shared"))
        if kind is SUBNETPOOLS:
            return bool(rec.get("shared"))
        if kind is PORTS:
            net = self.state.get("networks", rec.get("network_id", ""))
            return bool(net and net.get("project_id") == ctx.project_id)
        if kind is SECURITY_GROUP_RULES:
            group = self.state.get("security_groups", rec.get("security_group_id", ""))
            return bool(group and group.get("project_id") == ctx.project_id)
        return False

    def get_visible(self, kind: Kind, rid: str, ctx: AuthContext) -> Record:
        rec = self.state.get(kind.collection, rid)
        if rec is None or not self.visible(kind, rec, ctx):
            raise kind.not_found(rid)
        return rec

    def get_owned(self, kind: Kind, rid: str, ctx: AuthContext, action: str) -> Record:
        """A record the caller may change: 404 when it cannot even see it, 403 when it can
        see it but does not own it (Neutron hides what a caller may not read)."""
        rec = self.get_visible(kind, rid, ctx)
        if not ctx.is_admin and rec.get("project_id") != ctx.project_id:
            raise policy_denied(self.liberty, f"{action}_{kind.member}")
        return rec

    def owner_for_create(self, body: dict[str, Any], ctx: AuthContext) -> str:
        """The project a new resource belongs to (``tenant_id``/``project_id`` of the body)."""
        tenant = body.get("tenant_id")
        project = body.get("project_id") if not self.liberty else None
        if tenant is not None and project is not None and tenant != project:
            raise bad_request("'project_id' and 'tenant_id' do not match")
        wanted = project or tenant or ctx.project_id
        if wanted != ctx.project_id and not ctx.is_admin:
            raise bad_request(
                "Specifying 'tenant_id' other than authenticated tenant in request requires "
                "admin privileges" if self.liberty else
                "Specifying 'project_id' or 'tenant_id' other than the authenticated project "
                "in request requires admin privileges")
        if not wanted:
            raise bad_request("Running without keystone AuthN requires that tenant_id is "
                              "specified")
        return str(wanted)

    def require_admin_for(self, body: dict[str, Any], keys: tuple[str, ...], ctx: AuthContext,
                          action: str) -> None:
        if ctx.is_admin:
            return
        for key in keys:
            if key in body:
                raise policy_denied(self.liberty, f"{action}:{key}")

    # -- request bodies ----------------------------------------------------------------------
    async def body_of(self, request: web.Request, kind: Kind) -> dict[str, Any]:
        body = await read_json(request)
        inner = body.get(kind.member)
        if not isinstance(inner, dict):
            raise bad_request("Resource body required" if not body else
                              f"Unable to find '{kind.member}' in request body")
        return inner

    def check_unknown(self, kind: Kind, body: dict[str, Any], allowed: set[str]) -> None:
        """Neutron refuses attributes it does not know (or cannot set) with a 400."""
        for key in body:
            if key not in allowed:
                raise bad_request(f"Unrecognized attribute(s) '{key}'")

    def creation_tags(self, body: dict[str, Any]) -> list[str]:
        """Tags given in a create body (modern Neutron's ``tag-creation`` extension); taken out
        of the body so the attribute check does not refuse them. Liberty has no tags at all:
        the key stays and is refused as unknown."""
        if self.liberty or "tags" not in body:
            return []
        tags = body.pop("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad_request(f"Invalid input for tags. Reason: '{tags}' is not a list of "
                              "strings.")
        for tag in tags:
            if not tag or len(tag) > 255 or "," in tag or "/" in tag:
                raise bad_request(f"Invalid input for tags. Reason: '{tag}' is not a valid "
                                  "tag.")
        return list(dict.fromkeys(tags))

    def stamp_new(self, rec: Record, tags: list[str] | None = None) -> Record:
        now = now_iso()
        rec.setdefault("id", new_id())
        rec.update({"created_at": now, "updated_at": now, "revision_number": 0})
        rec.setdefault("description", "")
        rec["tags"] = list(tags or [])
        return rec

    def touch(self, rec: Record) -> None:
        rec["updated_at"] = now_iso()
        rec["revision_number"] = int(rec.get("revision_number", 0)) + 1
        self.state.touch_record(rec)

    # -- quotas ------------------------------------------------------------------------------
    def quota_defaults(self) -> dict[str, int]:
        return dict(LIBERTY_QUOTAS if self.liberty else MODERN_QUOTAS)

    def quota_limits(self, project_id: str) -> dict[str, int]:
        limits = self.quota_defaults()
        stored = self.state.get("quotas", f"network:{project_id}")
        if stored:
            limits.update({k: int(v) for k, v in (stored.get("limits") or {}).items()
                           if k in limits})
        return limits

    def usage(self, project_id: str) -> dict[str, int]:
        used = {key: 0 for key in self.quota_defaults()}
        for kind in KINDS:
            if kind.quota_key in used:
                used[kind.quota_key] = len(self.state.where(kind.collection, "project_id",
                                                            project_id))
        return used

    def enforce_quota(self, kind: Kind, project_id: str, count: int = 1) -> None:
        if kind.quota_key is None:
            return
        limit = self.quota_limits(project_id).get(kind.quota_key, -1)
        if limit < 0:
            return
        if self.usage(project_id)[kind.quota_key] + count > limit:
            raise SimHTTPError(409, f"Quota exceeded for resources: ['{kind.quota_key}'].",
                               neutron_type="OverQuota")

    # -- the default security group ----------------------------------------------------------
    def ensure_default_group(self, project_id: str | None) -> Record | None:
        """Neutron creates a project's ``default`` group lazily (first list, network, port or
        group of that project): ingress from members of the group and egress anywhere, for
        IPv4 and IPv6. Internal creations are not counted against the quota."""
        if not project_id:
            return None
        # By project (an index kept per state generation): every page of a group listing
        # asks, and a scan of 20,000 groups per page adds up.
        for group in self.state.where("security_groups", "project_id", project_id):
            if group.get("name") == "default":
                return group
        group = self.stamp_new({"name": "default", "project_id": project_id,
                                "description": "Default security group", "stateful": True,
                                "shared": False})
        self.state.put("security_groups", group)
        for ethertype in ("IPv4", "IPv6"):
            self.add_rule(group, "ingress", ethertype, remote_group_id=group["id"])
            self.add_rule(group, "egress", ethertype)
        return group

    def add_rule(self, group: Record, direction: str, ethertype: str, **extra: Any) -> Record:
        rule = self.stamp_new({
            "project_id": group["project_id"], "security_group_id": group["id"],
            "direction": direction, "ethertype": ethertype, "protocol": None,
            "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
            "remote_group_id": None, "remote_address_group_id": None,
            "normalized_cidr": None})
        rule.pop("tags", None)
        rule.update(extra)
        if rule.get("remote_ip_prefix"):
            rule["normalized_cidr"] = rule["remote_ip_prefix"]
        rule["belongs_to_default_sg"] = group.get("name") == "default"
        return self.state.put("security_group_rules", rule)

    # -- listing -----------------------------------------------------------------------------
    def list_response(self, kind: Kind, request: web.Request,
                      records: list[Record] | None = None) -> web.Response:
        ctx = auth_of(request)
        # Child lists (a group's rules) are rendered only for the page that is answered, unless
        # the query filters or sorts on them: listing 20,000 groups a page at a time must not
        # render every rule of every group for every page.
        derived_key = DERIVED[kind.collection][2] if kind.collection in DERIVED else None
        late = derived_key is not None and derived_key not in request.query and \
            derived_key not in request.query.getall("sort_key", [])
        plain = all(k in ("limit", "marker", "fields", "page_reverse") for k in request.query)
        # What the pages of one listing share (the visible records; for a filtered or sorted
        # listing, the rendered, filtered and sorted items) is kept until the state changes:
        # paging through 10,000 ports filtered by device_owner rendered every port per page.
        memo_key = None if records is not None else (
            kind.collection, ctx.project_id, ctx.is_admin, late,
            tuple(sorted((k, v) for k, v in request.query.items()
                         if k not in ("limit", "marker", "fields", "page_reverse"))))
        listing = None if memo_key is None else self._list_memo.get(memo_key)
        if listing is None:
            source = records if records is not None else self._candidates(kind, request)
            visible = [r for r in source if self.visible(kind, r, ctx)]
            items: list[dict[str, Any]] = visible
            if plain:
                pass
            elif derived_key is not None and not late:
                every = self.children_of(kind, {r["id"] for r in visible})
                items = [self.render(kind, r, ctx, children=every) for r in visible]
            else:
                items = [self.render(kind, r, ctx, derive=False) for r in visible]
            if not plain:
                items = self.apply_filters(kind, items, request)
                items = self.apply_sort(kind, items, request)
            listing = Listing(visible, items)
            if memo_key is not None:
                self._list_memo.put(memo_key, listing)
        if plain:
            # No filter and no sort: page the stored records, render only the page (what a
            # discovery of 10,000 tenants asks, page after page).
            raw_page, links = self.paginate(kind, listing, request)
            kids = self.children_of(kind, {r["id"] for r in raw_page}) if derived_key else None
            page = [self.render(kind, r, ctx, children=kids) for r in raw_page]
            late = False
        else:
            page, links = self.paginate(kind, listing, request)
        if late:
            kids = self.children_of(kind, {i["id"] for i in page})
            by_id = listing.visible_by_id()
            page = [self.render(kind, by_id[i["id"]], ctx, children=kids) for i in page]
        body: dict[str, Any] = {kind.collection: [self.select_fields(i, request) for i in page]}
        if links:
            body[f"{kind.collection}_links"] = links
        return json_response(body)

    def _candidates(self, kind: Kind, request: web.Request) -> list[Record]:
        """The stored records a filtered listing may answer, before any is rendered: those of
        the filtered owner or group from the state's index, then (modern profile, where a
        rendered attribute is the stored one) without those whose stored name, id, network,
        device, group or tags already rule them out. What remains goes through the listing's
        own filters; rendering every record of a collection per call made a listing's cost
        grow with the cloud."""
        query = request.query
        coll = kind.collection
        records: list[Record] | None = None
        for key, stored in INDEXED_FILTERS.get(coll, ()):
            values = [v for v in query.getall(key, []) if v != ""]
            if len(values) == 1 and key in self.known_attributes(kind):
                records = self.state.where(coll, stored, values[0])
                break
        if records is None and not self.liberty:
            records = self._by_tag_or_name(kind, request)
        if records is None:
            records = list(self.state.values(coll))
        if self.liberty:
            return records
        for key in dict.fromkeys(query.keys()):
            values = [v for v in query.getall(key) if v != ""]
            if not values:
                continue
            if key == "tags" and "tags" in kind.modern_keys:
                records = [r for r in records
                           if "tags" not in r or self._tags_match(key, r["tags"], values)]
            elif key in RAW_FILTERS:
                records = [r for r in records
                           if key not in r or self._value_matches(r[key], values)]
        return records

    def _by_tag_or_name(self, kind: Kind, request: web.Request) -> list[Record] | None:
        """Modern profile: the records holding the first queried tag (``tags``: all of them
        must be there), or of the queried name, device or network, from the state's
        indexes; None: no such filter.
        Records whose stored tags or name the index cannot judge (none stored, not a list,
        not a plain string) come too: the listing's own filters judge them as before."""
        query = request.query
        coll = kind.collection
        tags = [t for v in query.getall("tags", []) for t in v.split(",") if t]
        if tags and "tags" in kind.modern_keys:
            found = self.state.keyed(coll, "tag-text", _tag_keys, tags[0])
            return self._merged(coll, found, self.state.keyed(coll, "tag-text", _tag_keys,
                                                              UNJUDGED))
        for key in TEXT_INDEXED:
            wanted = [v for v in query.getall(key, []) if v != ""]
            if len(wanted) == 1:
                keys = _text_keys(key)
                found = self.state.keyed(coll, f"{key}-text", keys, wanted[0])
                return self._merged(coll, found, self.state.keyed(coll, f"{key}-text", keys,
                                                                  UNJUDGED))
        return None

    def _merged(self, coll: str, first: list[Record], second: list[Record]) -> list[Record]:
        if not second:
            return first
        position = self.state.positions(coll)
        merged = {r["id"]: r for r in (*first, *second)}
        return sorted(merged.values(), key=lambda r: position[r["id"]])

    def show_response(self, kind: Kind, rec: Record, request: web.Request,
                      status: int = 200) -> web.Response:
        out = self.render(kind, rec, auth_of(request))
        return json_response({kind.member: self.select_fields(out, request)}, status=status)

    @staticmethod
    def select_fields(item: dict[str, Any], request: web.Request) -> dict[str, Any]:
        wanted = [f for value in request.query.getall("fields", []) for f in value.split(",")
                  if f]
        if not wanted:
            return item
        return {k: v for k, v in item.items() if k in wanted}

    def apply_filters(self, kind: Kind, items: list[dict[str, Any]], request: web.Request
                      ) -> list[dict[str, Any]]:
        known = self.known_attributes(kind)
        invalid: list[str] = []
        for key in dict.fromkeys(request.query.keys()):
            if key in LIST_CONTROL_PARAMS:
                continue
            values = [v for v in request.query.getall(key) if v != ""]
            if key in TAG_FILTERS and not self.liberty and "tags" in kind.modern_keys:
                items = [i for i in items if self._tags_match(key, i.get("tags") or [], values)]
                continue
            if key not in known:
                # Liberty drops filters on columns it does not have; later releases validate.
                if not self.liberty:
                    invalid.append(key)
                continue
            if not values:
                continue
            if key == "fixed_ips":
                items = [i for i in items if self._fixed_ips_match(i, values)]
                continue
            items = [i for i in items if key in i and self._value_matches(i[key], values)]
        if invalid:
            raise bad_request(f"{invalid} is invalid attribute for filtering")
        return items

    @staticmethod
    def _value_matches(actual: Any, wanted: list[str]) -> bool:
        if isinstance(actual, bool):
            return any(parse_bool(w) == actual for w in wanted)
        if isinstance(actual, list):
            return any(w in [str(a) for a in actual] for w in wanted)
        if actual is None:
            return any(w.lower() in ("none", "null") for w in wanted)
        return str(actual) in wanted

    @staticmethod
    def _tags_match(mode: str, tags: list[str], values: list[str]) -> bool:
        wanted = {t for v in values for t in v.split(",") if t}
        have = set(tags)
        if mode == "tags":
            return wanted <= have
        if mode == "tags-any":
            return bool(wanted & have)
        if mode == "not-tags":
            return not wanted <= have
        return not wanted & have

    @staticmethod
    def _fixed_ips_match(item: dict[str, Any], values: list[str]) -> bool:
        for value in values:
            key, _, want = value.partition("=")
            if not any(str(ip.get(key)) == want for ip in item.get("fixed_ips") or []):
                return False
        return True

    def apply_sort(self, kind: Kind, items: list[dict[str, Any]], request: web.Request
                   ) -> list[dict[str, Any]]:
        keys = [k for k in request.query.getall("sort_key", []) if k]
        dirs = [d for d in request.query.getall("sort_dir", []) if d]
        if not keys and not dirs:
            return items
        if len(dirs) not in (0, len(keys)):
            raise bad_request("The number of sort_keys and sort_dirs must be same")
        dirs = dirs or ["asc"] * len(keys)
        bad_dirs = [d for d in dirs if d not in ("asc", "desc")]
        if bad_dirs:
            raise bad_request(f"{bad_dirs} is invalid value for sort_dirs, valid value is "
                              "'asc' and 'desc'")
        absent = [k for k in keys if k not in self.known_attributes(kind)]
        if absent:
            raise bad_request(f"{absent} is invalid attribute for sort_keys")
        # Neutron appends the primary key so that pages are stable.
        for key, direction in reversed([*list(zip(keys, dirs, strict=True)), ("id", "asc")]):
            items = sorted(items, key=_sort_key(key), reverse=direction == "desc")
        return items

    def paginate(self, kind: Kind, listing: Listing, request: web.Request
                 ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        items = listing.paged
        raw_limit = request.query.get("limit", "0") or "0"
        try:
            limit = int(raw_limit)
            if limit < 0:
                raise ValueError(raw_limit)
        except ValueError as exc:
            raise SimHTTPError(400, f"Bad limit request: Limit must be an integer 0 or "
                               f"greater and not '{raw_limit}'.",
                               neutron_type="BadRequest") from exc
        if not limit:
            return items, []
        marker = request.query.get("marker")
        reverse = request.query.get("page_reverse", "False").lower() == "true"
        position = listing.position()
        if marker and marker not in position:
            raise kind.not_found(marker)
        if reverse:
            end = position[marker] if marker else len(items)
            page = items[max(0, end - limit):end]
        else:
            start = position[marker] + 1 if marker else 0
            page = items[start:start + limit]
        # Neutron's get_pagination_links: a full page always gets a "next" link (the page
        # after it may be empty), and a "previous" link unless a reversed page came up short.
        links: list[dict[str, str]] = []
        if not (len(page) < limit and not reverse):
            links.append({"rel": "next", "href": self._page_href(request, page, -1, False)})
        if not (len(page) < limit and reverse):
            links.append({"rel": "previous", "href": self._page_href(request, page, 0, True)})
        return page, links

    @staticmethod
    def _page_href(request: web.Request, page: list[dict[str, Any]], index: int,
                   reverse: bool) -> str:
        params = [(k, v) for k, v in request.query.items()
                  if k not in ("marker", "page_reverse")]
        if page:
            params.append(("marker", page[index]["id"]))
        if reverse:
            params.append(("page_reverse", "True"))
        return f"{origin(request)}{request.path}?{urlencode(params)}"


# Filters a modern listing answers from an index of the field's text, most selective first.
TEXT_INDEXED = ("name", "device_id", "network_id")
# Index key of the records an index by tag or name cannot judge (see _by_tag_or_name).
UNJUDGED = ("unjudged",)


def _tag_keys(record: Record) -> tuple[Any, ...]:
    tags = record.get("tags")
    if not isinstance(tags, list):
        return (UNJUDGED,)
    return tuple(dict.fromkeys(t for t in tags if isinstance(t, str)))


def _text_keys(field: str) -> Callable[[Record], tuple[Any, ...]]:
    """A field compares as its text (str(value) in the wanted values): only a plain string
    is indexed; None (matched by "none"/"null"), a bool or anything else is left
    unjudged."""
    def keys(record: Record) -> tuple[Any, ...]:
        value = record.get(field, UNJUDGED)
        return (value,) if isinstance(value, str) else (UNJUDGED,)
    return keys


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    return lambda item: _sort_value(item.get(key))


def _sort_value(value: Any) -> tuple[int, Any]:
    # None sorts first, like NULL in MySQL; mixed types compare by their text.
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))
