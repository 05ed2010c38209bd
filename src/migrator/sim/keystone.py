"""Keystone: v3 (tokens with catalog, domains, projects, users, roles, role assignments) and,
on Liberty, v2.0 (tokens, tenants, users, OS-KSADM roles).

Policy is Liberty's default: the ``admin`` role anywhere is cloud admin; everyone else may read
only their own user and the projects they belong to.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from migrator.sim.cloud import REGION, SimCloud
from migrator.sim.http import (
    AuthContext,
    SimHTTPError,
    auth_of,
    json_response,
    origin,
    public,
    read_json,
    require,
    require_admin,
)
from migrator.sim.profiles import top_level_parent
from migrator.sim.state import Record, new_hex_id

PREFIX = "/identity"
DEFAULT_DOMAIN = "default"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


class KeystoneAPI:
    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state

    # -- discovery -------------------------------------------------------------------------
    def _v3_doc(self, request: web.Request) -> dict[str, Any]:
        base = f"{origin(request)}{PREFIX}"
        return {"id": self.cloud.profile.keystone_v3_version, "status": "stable",
                "updated": "2015-03-30T00:00:00Z",
                "links": [{"rel": "self", "href": f"{base}/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    def _v2_doc(self, request: web.Request) -> dict[str, Any]:
        base = f"{origin(request)}{PREFIX}"
        return {"id": "v2.0", "status": "stable", "updated": "2014-04-17T00:00:00Z",
                "links": [{"rel": "self", "href": f"{base}/v2.0/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v2.0+json"}]}

    @public
    async def versions(self, request: web.Request) -> web.Response:
        values = [self._v3_doc(request)]
        if self.cloud.profile.keystone_v2:
            values.append(self._v2_doc(request))
        return json_response({"versions": {"values": values}}, status=300)

    @public
    async def v3_version(self, request: web.Request) -> web.Response:
        return json_response({"version": self._v3_doc(request)})

    @public
    async def v2_version(self, request: web.Request) -> web.Response:
        return json_response({"version": self._v2_doc(request)})

    # -- authentication --------------------------------------------------------------------
    def _domain_of(self, ref: dict[str, Any] | None) -> Record | None:
        if not ref:
            return self.state.get("domains", DEFAULT_DOMAIN)
        if "id" in ref:
            return self.state.get("domains", ref["id"])
        return self.state.find_one("domains", name=ref.get("name"))

    def _check_password(self, user_ref: dict[str, Any]) -> Record:
        user: Record | None = None
        if "id" in user_ref:
            user = self.state.get("users", user_ref["id"])
        else:
            domain = self._domain_of(user_ref.get("domain"))
            if domain is not None:
                user = self.state.find_one("users", name=user_ref.get("name"),
                                           domain_id=domain["id"])
        if user is None or not user.get("enabled", True) or user.get(
            "password"
        ) != user_ref.get("password"):
            raise SimHTTPError(401, "The request you have made requires authentication.")
        return user

    def _roles_on(self, user_id: str, project_id: str | None, domain_id: str | None
                  ) -> list[Record]:
        out = []
        for ra in self.state.where("role_assignments", "user_id", user_id):
            if (project_id and ra.get("project_id") == project_id) or (
                domain_id and ra.get("domain_id") == domain_id
            ):
                role = self.state.get("roles", ra["role_id"])
                if role is not None:
                    out.append(role)
        return out

    def _scope_project(self, scope: dict[str, Any]) -> Record:
        ref = scope["project"]
        project: Record | None
        if "id" in ref:
            project = self.state.get("projects", ref["id"])
        else:
            domain = self._domain_of(ref.get("domain"))
            project = domain and self.state.find_one(
                "projects", name=ref.get("name"), domain_id=domain["id"]
            )
        if project is None or not project.get("enabled", True):
            raise SimHTTPError(401, "The request you have made requires authentication.")
        return project

    def _issue(self, user: Record, project: Record | None, domain: Record | None) -> AuthContext:
        roles = self._roles_on(user["id"], project["id"] if project else None,
                               domain["id"] if domain else None)
        if (project or domain) and not roles:
            raise SimHTTPError(401, "User has no access to the requested scope.")
        return self.cloud.issue_token({
            "user_id": user["id"], "user_name": user["name"],
            "project_id": project["id"] if project else None,
            "project_name": project["name"] if project else None,
            "domain_id": domain["id"] if domain else None,
            "roles": [r["name"] for r in roles],
        })

    def _v3_catalog(self, project_id: str | None) -> list[dict[str, Any]]:
        catalog = []
        for entry in self.cloud.catalog_entries(project_id):
            endpoints = [{"id": f"{entry['name']}-{iface}", "interface": iface,
                          "region": REGION, "region_id": REGION, "url": entry["url"]}
                         for iface in ("public", "internal", "admin")]
            catalog.append({"id": entry["name"], "type": entry["type"], "name": entry["name"],
                            "endpoints": endpoints})
        return catalog

    def _v3_token_body(self, ctx: AuthContext, methods: list[str]) -> dict[str, Any]:
        user = self.state.get("users", ctx.user_id) or {}
        user_domain = self.state.get("domains", user.get("domain_id", DEFAULT_DOMAIN)) or {}
        token: dict[str, Any] = {
            "methods": methods,
            "expires_at": _iso(ctx.expires_at),
            "issued_at": _iso(time.time()),
            "audit_ids": [new_hex_id()[:22]],
            "user": {"id": ctx.user_id, "name": ctx.user_name,
                     "domain": {"id": user_domain.get("id"), "name": user_domain.get("name")},
                     "password_expires_at": None},
            "roles": [{"id": r["id"], "name": r["name"]} for r in
                      (self.state.find_one("roles", name=n) for n in ctx.roles) if r],
        }
        if ctx.project_id:
            project = self.state.get("projects", ctx.project_id) or {}
            pdomain = self.state.get("domains", project.get("domain_id", DEFAULT_DOMAIN)) or {}
            token["project"] = {"id": ctx.project_id, "name": ctx.project_name,
                                "domain": {"id": pdomain.get("id"), "name": pdomain.get("name")}}
            token["is_domain"] = False
        elif ctx.domain_id:
            domain = self.state.get("domains", ctx.domain_id) or {}
            token["domain"] = {"id": domain.get("id"), "name": domain.get("name")}
        if ctx.project_id or ctx.domain_id:
            token["catalog"] = self._v3_catalog(ctx.project_id)
        return {"token": token}

    @public
    async def v3_issue_token(self, request: web.Request) -> web.Response:
        auth = require(await read_json(request), "auth")
        identity = auth.get("identity") or {}
        methods = identity.get("methods") or []
        if "password" in methods:
            user = self._check_password((identity.get("password") or {}).get("user") or {})
        elif "token" in methods:
            old = self.cloud.validate_token((identity.get("token") or {}).get("id"))
            if old is None:
                raise SimHTTPError(401, "The request you have made requires authentication.")
            user = self.state.get("users", old.user_id) or {}
        else:
            raise SimHTTPError(401, "The request you have made requires authentication.")
        scope = auth.get("scope") or {}
        project = self._scope_project(scope) if "project" in scope else None
        domain = self._domain_of(scope["domain"]) if "domain" in scope else None
        if "domain" in scope and domain is None:
            raise SimHTTPError(401, "The request you have made requires authentication.")
        ctx = self._issue(user, project, domain)
        return json_response(self._v3_token_body(ctx, methods), status=201,
                             headers={"X-Subject-Token": ctx.token})

    async def v3_validate_token(self, request: web.Request) -> web.Response:
        ctx = self.cloud.validate_token(request.headers.get("X-Subject-Token"))
        if ctx is None:
            raise SimHTTPError(404, "Could not find token.")
        return json_response(self._v3_token_body(ctx, ["password"]),
                             headers={"X-Subject-Token": ctx.token})

    async def v3_revoke_token(self, request: web.Request) -> web.Response:
        self.cloud.tokens.pop(request.headers.get("X-Subject-Token", ""), None)
        return web.Response(status=204)

    @public
    async def v2_issue_token(self, request: web.Request) -> web.Response:
        auth = require(await read_json(request), "auth")
        creds = auth.get("passwordCredentials")
        if creds:
            user = self._check_password({"name": creds.get("username"),
                                         "password": creds.get("password")})
        elif auth.get("token"):
            old = self.cloud.validate_token(auth["token"].get("id"))
            if old is None:
                raise SimHTTPError(401, "The request you have made requires authentication.")
            user = self.state.get("users", old.user_id) or {}
        else:
            raise SimHTTPError(400, "Expecting to find passwordCredentials in auth.")
        project = None
        if auth.get("tenantId"):
            project = self._scope_project({"project": {"id": auth["tenantId"]}})
        elif auth.get("tenantName"):
            project = self._scope_project({"project": {"name": auth["tenantName"],
                                                       "domain": {"id": DEFAULT_DOMAIN}}})
        ctx = self._issue(user, project, None)
        access: dict[str, Any] = {
            "token": {"id": ctx.token, "expires": _iso(ctx.expires_at)[:19] + "Z",
                      "issued_at": _iso(time.time())[:26], "audit_ids": [new_hex_id()[:22]]},
            "user": {"id": user["id"], "name": user["name"], "username": user["name"],
                     "roles": [{"name": r} for r in ctx.roles], "roles_links": []},
            "metadata": {"is_admin": 0, "roles": []},
            "serviceCatalog": [],
        }
        if project is not None:
            access["token"]["tenant"] = self._v2_tenant(project)
            catalog = []
            for entry in self.cloud.catalog_entries(project["id"]):
                url = entry["url"]
                if entry["type"] == "identity":
                    url = f"{url}/v2.0"
                catalog.append({"type": entry["type"], "name": entry["name"],
                                "endpoints_links": [],
                                "endpoints": [{"id": f"{entry['name']}-v2", "region": REGION,
                                               "publicURL": url, "internalURL": url,
                                               "adminURL": url}]})
            access["serviceCatalog"] = catalog
        return json_response({"access": access})

    # -- v3 resources ----------------------------------------------------------------------
    @staticmethod
    def _links(request: web.Request) -> dict[str, Any]:
        return {"self": str(request.url), "previous": None, "next": None}

    def _render(self, kind: str, rec: Record, request: web.Request) -> dict[str, Any]:
        out = {k: v for k, v in rec.items() if k != "password" and not k.startswith("_")}
        out["links"] = {"self": f"{origin(request)}{PREFIX}/v3/{kind}/{rec['id']}"}
        return out

    def _filter(self, records: list[Record], request: web.Request, keys: tuple[str, ...]
                ) -> list[Record]:
        for key in keys:
            if key in request.query:
                want: Any = request.query[key]
                if key == "enabled":
                    want = want.lower() in ("true", "1", "yes")
                records = [r for r in records if r.get(key) == want]
        return records

    @staticmethod
    def _filter_tags(records: list[Record], request: web.Request) -> list[Record]:
        """Keystone >= Queens: ``tags`` (all of), ``tags-any``, ``not-tags``, ``not-tags-any``,
        each a comma-separated list."""
        for mode in ("tags", "tags-any", "not-tags", "not-tags-any"):
            if mode not in request.query:
                continue
            wanted = {t for t in request.query[mode].split(",") if t}
            out = []
            for rec in records:
                have = set(rec.get("tags") or [])
                hit = wanted <= have if mode in ("tags", "not-tags") else bool(wanted & have)
                if hit != mode.startswith("not-"):
                    out.append(rec)
            records = out
        return records

    @staticmethod
    def _checked_tags(value: Any) -> list[str]:
        """Keystone's project tag schema: at most 80 strings of 1-255 characters, no '/' or
        ','."""
        if not isinstance(value, list) or len(value) > 80:
            raise SimHTTPError(400, "Invalid input for field 'tags': expected a list of at "
                                    "most 80 tags.")
        for tag in value:
            KeystoneAPI._check_tag(tag)
        return list(dict.fromkeys(value))

    @staticmethod
    def _check_tag(tag: Any) -> str:
        if not isinstance(tag, str) or not 1 <= len(tag) <= 255 or "/" in tag or "," in tag:
            raise SimHTTPError(400, f"Invalid input for field 'tags': {tag!r} is not a valid "
                                    "tag (1-255 characters, no '/' or ',').")
        return tag

    def _get(self, kind: str, rid: str) -> Record:
        rec = self.state.get(kind, rid)
        if rec is None:
            singular = kind.rstrip("s")
            raise SimHTTPError(404, f"Could not find {singular}: {rid}.")
        return rec

    def _listed(self, kind: str, request: web.Request) -> list[Record]:
        """The records of ``kind`` a listing starts from: those of the queried name (or,
        for projects, tag or domain) from the state's index, else all; the listing's filters
        then apply as to all."""
        query = request.query
        if "name" in query:
            return self.state.lookup(kind, "name", query["name"])
        if kind == "projects" and not self.cloud.profile.keystone_v2 and "tags" in query:
            wanted = [t for t in query["tags"].split(",") if t]
            if wanted:
                return self.state.tagged(kind, wanted[0])
        if kind in ("projects", "users") and "domain_id" in query:
            return self.state.where(kind, "domain_id", query["domain_id"])
        return list(self.state.values(kind))

    async def list_domains(self, request: web.Request) -> web.Response:
        require_admin(request)
        items = self._filter(self._listed("domains", request), request, ("name", "enabled"))
        return json_response({"domains": [self._render("domains", r, request) for r in items],
                              "links": self._links(request)})

    async def list_projects(self, request: web.Request) -> web.Response:
        require_admin(request)
        items = self._filter(self._listed("projects", request), request,
                             ("name", "domain_id", "enabled", "parent_id"))
        if not self.cloud.profile.keystone_v2:
            items = self._filter_tags(items, request)
        return json_response({"projects": [self._render("projects", r, request) for r in items],
                              "links": self._links(request)})

    async def list_users(self, request: web.Request) -> web.Response:
        require_admin(request)
        items = self._filter(self._listed("users", request), request,
                             ("name", "domain_id", "enabled"))
        return json_response({"users": [self._render("users", r, request) for r in items],
                              "links": self._links(request)})

    async def list_roles(self, request: web.Request) -> web.Response:
        auth_of(request)
        items = self._filter(self._listed("roles", request), request, ("name",))
        return json_response({"roles": [self._render("roles", r, request) for r in items],
                              "links": self._links(request)})

    async def get_one(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        rid = request.match_info["id"]
        ctx = auth_of(request)
        rec = self._get(kind, rid)
        allowed = ctx.is_admin or (kind == "users" and rid == ctx.user_id) or (
            kind == "projects" and rid == ctx.project_id) or kind == "roles"
        if not allowed:
            raise SimHTTPError(403, "You are not authorized to perform the requested action.")
        return json_response({kind[:-1]: self._render(kind, rec, request)})

    async def create(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        require_admin(request)
        body = require(await read_json(request), kind[:-1])
        if not body.get("name"):
            raise SimHTTPError(400, f"Invalid input for field 'name': {kind[:-1]} needs a name")
        rec: Record = {"id": new_hex_id(), **body}
        if kind in ("projects", "users"):
            rec.setdefault("domain_id", DEFAULT_DOMAIN)
            if self.state.get("domains", rec["domain_id"]) is None:
                raise SimHTTPError(400, f"Could not find domain: {rec['domain_id']}.")
            rec.setdefault("enabled", True)
            if self.state.find_one(kind, name=rec["name"], domain_id=rec["domain_id"]):
                raise SimHTTPError(409, f"Conflict occurred attempting to store {kind[:-1]} - "
                                        f"Duplicate entry found with name {rec['name']}.")
        else:
            if self.state.find_one(kind, name=rec["name"]):
                raise SimHTTPError(409, f"Conflict occurred attempting to store {kind[:-1]} - "
                                        f"Duplicate entry found with name {rec['name']}.")
        if kind == "projects":
            rec.setdefault("description", "")
            if not rec.get("parent_id"):
                rec["parent_id"] = top_level_parent(self.cloud.profile, rec["domain_id"])
            rec.setdefault("is_domain", False)
            if not self.cloud.profile.keystone_v2:
                rec["tags"] = self._checked_tags(rec.get("tags", []))
            elif "tags" in rec:
                raise SimHTTPError(400, "Invalid input for field 'project': Additional "
                                        "properties are not allowed ('tags' was unexpected)")
        if kind == "domains":
            rec.setdefault("enabled", True)
            rec.setdefault("description", "")
        if kind == "roles":
            rec.setdefault("domain_id", None)
        self.state.put(kind, rec)
        return json_response({kind[:-1]: self._render(kind, rec, request)}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        require_admin(request)
        rec = self._get(kind, request.match_info["id"])
        body = require(await read_json(request), kind[:-1])
        body.pop("id", None)
        if kind == "projects" and "tags" in body and not self.cloud.profile.keystone_v2:
            body["tags"] = self._checked_tags(body["tags"])
        rec.update(body)
        self.state.touch(kind, rec)
        return json_response({kind[:-1]: self._render(kind, rec, request)})

    async def delete(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        require_admin(request)
        rid = request.match_info["id"]
        self._get(kind, rid)
        self.state.delete(kind, rid)
        field = {"users": "user_id", "projects": "project_id", "roles": "role_id"}.get(kind)
        if field is not None:
            for ra in self.state.where("role_assignments", field, rid):
                self.state.delete("role_assignments", ra["id"])
        return web.Response(status=204)

    # -- project tags (modern Keystone, Queens and later) --------------------------------
    def _tagged_project(self, request: web.Request) -> Record:
        require_admin(request)
        return self._get("projects", request.match_info["id"])

    def _tags_response(self, project: Record, status: int = 200) -> web.Response:
        return json_response({"tags": list(project.get("tags") or [])}, status=status)

    async def get_project_tags(self, request: web.Request) -> web.Response:
        return self._tags_response(self._tagged_project(request))

    async def replace_project_tags(self, request: web.Request) -> web.Response:
        project = self._tagged_project(request)
        body = await read_json(request)
        project["tags"] = self._checked_tags(body.get("tags") if isinstance(body, dict)
                                             else None)
        self.state.touch("projects", project)
        return self._tags_response(project)

    async def clear_project_tags(self, request: web.Request) -> web.Response:
        project = self._tagged_project(request)
        project["tags"] = []
        self.state.touch("projects", project)
        return web.Response(status=204)

    async def check_project_tag(self, request: web.Request) -> web.Response:
        project = self._tagged_project(request)
        tag = request.match_info["tag"]
        if tag not in (project.get("tags") or []):
            raise SimHTTPError(404, f"Could not find project tag: {tag}.")
        return web.Response(status=204)

    async def add_project_tag(self, request: web.Request) -> web.Response:
        project = self._tagged_project(request)
        tag = self._check_tag(request.match_info["tag"])
        tags = list(project.get("tags") or [])
        if tag not in tags:
            tags.append(tag)
            project["tags"] = self._checked_tags(tags)
            self.state.touch("projects", project)
        return web.Response(status=201)

    async def remove_project_tag(self, request: web.Request) -> web.Response:
        project = self._tagged_project(request)
        tag = request.match_info["tag"]
        if tag not in (project.get("tags") or []):
            raise SimHTTPError(404, f"Could not find project tag: {tag}.")
        project["tags"] = [t for t in project["tags"] if t != tag]
        self.state.touch("projects", project)
        return web.Response(status=204)

    async def user_projects(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        uid = request.match_info["id"]
        if uid != ctx.user_id and not ctx.is_admin:
            raise SimHTTPError(403, "You are not authorized to perform the requested action.")
        items = [self._render("projects", p, request) for p in self._projects_of(uid)]
        return json_response({"projects": items, "links": self._links(request)})

    def _projects_of(self, user_id: str) -> list[Record]:
        """The projects ``user_id`` holds a role on, in the order of the projects."""
        found: dict[str, Record] = {}
        for ra in self.state.where("role_assignments", "user_id", user_id):
            project = self.state.get("projects", ra.get("project_id") or "")
            if project is not None:
                found[project["id"]] = project
        order = self.state.positions("projects")
        return sorted(found.values(), key=lambda p: order[p["id"]])

    # -- role assignments ------------------------------------------------------------------
    def _domain_ref(self, domain_id: str | None) -> dict[str, Any]:
        domain = self.state.get("domains", domain_id or "") or {}
        return {"id": domain_id, "name": domain.get("name")}

    def _ra_render(self, ra: Record, include_names: bool, request: web.Request
                   ) -> dict[str, Any]:
        """One assignment as Keystone formats it (keystone/api/role_assignments.py
        ``_format_entity``; Liberty: assignment/controllers.py): the link to the grant, and
        with ``include_names`` (Mitaka and later) every entity's name and its domain's id
        and name (a role's domain only for a domain-specific role)."""
        out: dict[str, Any] = {"role": {"id": ra["role_id"]}, "user": {"id": ra["user_id"]}}
        if ra.get("project_id"):
            out["scope"] = {"project": {"id": ra["project_id"]}}
            link = f"/projects/{ra['project_id']}"
        else:
            out["scope"] = {"domain": {"id": ra.get("domain_id")}}
            link = f"/domains/{ra.get('domain_id')}"
        link += f"/users/{ra['user_id']}/roles/{ra['role_id']}"
        out["links"] = {"assignment": f"{origin(request)}{PREFIX}/v3{link}"}
        if include_names:
            role = self.state.get("roles", ra["role_id"]) or {}
            user = self.state.get("users", ra["user_id"]) or {}
            out["role"]["name"] = role.get("name")
            if role.get("domain_id") is not None:
                out["role"]["domain"] = self._domain_ref(role["domain_id"])
            out["user"].update(name=user.get("name"),
                               domain=self._domain_ref(user.get("domain_id")))
            if ra.get("project_id"):
                project = self.state.get("projects", ra["project_id"]) or {}
                out["scope"]["project"].update(
                    name=project.get("name"), domain=self._domain_ref(project.get("domain_id")))
            else:
                out["scope"]["domain"]["name"] = self._domain_ref(ra.get("domain_id"))["name"]
        return out

    async def list_role_assignments(self, request: web.Request) -> web.Response:
        require_admin(request)
        q = request.query
        matches = {"user.id": "user_id", "role.id": "role_id",
                   "scope.project.id": "project_id", "scope.domain.id": "domain_id"}
        if "user.id" in q:
            items = self.state.where("role_assignments", "user_id", q["user.id"])
        elif "scope.project.id" in q:
            items = self.state.where("role_assignments", "project_id", q["scope.project.id"])
        else:
            items = list(self.state.values("role_assignments"))
        for param, key in matches.items():
            if param in q:
                items = [ra for ra in items if ra.get(key) == q[param]]
        # Liberty has no include_names: the parameter is ignored there.
        names = not self.cloud.profile.keystone_v2 and "include_names" in q and q[
            "include_names"].lower() in ("true", "1", "")
        return json_response({"role_assignments": [self._ra_render(ra, names, request)
                                                    for ra in items],
                              "links": self._links(request)})

    def _grant_target(self, request: web.Request) -> tuple[str, str, str]:
        project = self._get("projects", request.match_info["project_id"])
        user = self._get("users", request.match_info["user_id"])
        role = self._get("roles", request.match_info["role_id"])
        return project["id"], user["id"], role["id"]

    async def grant(self, request: web.Request) -> web.Response:
        require_admin(request)
        pid, uid, rid = self._grant_target(request)
        if not self.state.find_one("role_assignments", project_id=pid, user_id=uid, role_id=rid):
            self.state.put("role_assignments", {"id": new_hex_id(), "project_id": pid,
                                                "user_id": uid, "role_id": rid})
        return web.Response(status=204)

    async def check_grant(self, request: web.Request) -> web.Response:
        require_admin(request)
        pid, uid, rid = self._grant_target(request)
        if not self.state.find_one("role_assignments", project_id=pid, user_id=uid, role_id=rid):
            raise SimHTTPError(404, f"Could not find role assignment with role: {rid}.")
        return web.Response(status=204)

    async def revoke(self, request: web.Request) -> web.Response:
        require_admin(request)
        pid, uid, rid = self._grant_target(request)
        ra = self.state.find_one("role_assignments", project_id=pid, user_id=uid, role_id=rid)
        if ra is None:
            raise SimHTTPError(404, f"Could not find role assignment with role: {rid}.")
        self.state.delete("role_assignments", ra["id"])
        return web.Response(status=204)

    async def project_user_roles(self, request: web.Request) -> web.Response:
        require_admin(request)
        pid = self._get("projects", request.match_info["project_id"])["id"]
        uid = self._get("users", request.match_info["user_id"])["id"]
        roles = self._roles_on(uid, pid, None)
        return json_response({"roles": [self._render("roles", r, request) for r in roles],
                              "links": self._links(request)})

    # -- v2.0 resources (Liberty) ----------------------------------------------------------
    @staticmethod
    def _v2_tenant(p: Record) -> dict[str, Any]:
        return {"id": p["id"], "name": p["name"], "description": p.get("description", ""),
                "enabled": p.get("enabled", True)}

    async def v2_tenants(self, request: web.Request) -> web.Response:
        """Liberty's two v2 tenant listings on one URL: an admin gets the admin API's
        (``resource/controllers.py`` ``get_all_projects``: every tenant of the default
        domain, or with ``?name=`` that one tenant as ``{"tenant": ...}``), anyone else the
        public API's (``get_projects_for_token``: their own tenants, ``name`` not a filter
        there). Both take ``limit`` and ``marker`` (``format_project_list``)."""
        ctx = auth_of(request)
        if ctx.is_admin and "name" in request.query:
            name = request.query["name"]
            found = self.state.find_one("projects", name=name, domain_id=DEFAULT_DOMAIN)
            if found is None or found.get("is_domain"):
                raise SimHTTPError(404, f"Could not find project: {name}.")
            return json_response({"tenant": self._v2_tenant(found)})
        if ctx.is_admin:
            items = list(self.state.values("projects"))
        else:
            items = self._projects_of(ctx.user_id)
        items = [p for p in items
                 if p.get("domain_id") == DEFAULT_DOMAIN and not p.get("is_domain")]
        return json_response({"tenants": [self._v2_tenant(p) for p in
                                          self._v2_page(items, request)],
                              "tenants_links": []})

    @staticmethod
    def _v2_page(items: list[Record], request: web.Request) -> list[Record]:
        """``format_project_list``: after ``marker`` (400 when unknown), at most ``limit``;
        no next link (``tenants_links`` stays empty)."""
        start = 0
        marker = request.query.get("marker")
        if marker is not None:
            for index, item in enumerate(items):
                if item["id"] == marker:
                    start = index + 1
                    break
            else:
                raise SimHTTPError(400, "Marker could not be found")
        end: int | None = None
        if "limit" in request.query:
            try:
                limit = int(request.query["limit"])
            except ValueError:
                limit = -1
            if limit < 0:
                raise SimHTTPError(400, "Invalid limit value")
            end = start + limit
        return items[start:end]

    async def v2_tenant(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        tid = request.match_info["id"]
        if not ctx.is_admin and tid != ctx.project_id:
            raise SimHTTPError(403, "You are not authorized to perform the requested action.")
        return json_response({"tenant": self._v2_tenant(self._get("projects", tid))})

    @staticmethod
    def _v2_user(u: Record) -> dict[str, Any]:
        return {"id": u["id"], "name": u["name"], "username": u["name"],
                "enabled": u.get("enabled", True), "email": u.get("email"),
                "tenantId": u.get("default_project_id")}

    async def v2_users(self, request: web.Request) -> web.Response:
        require_admin(request)
        return json_response({"users": [self._v2_user(u) for u in self.state.values("users")]})

    async def v2_user(self, request: web.Request) -> web.Response:
        require_admin(request)
        return json_response({"user": self._v2_user(self._get("users", request.match_info["id"]))})

    async def v2_roles(self, request: web.Request) -> web.Response:
        require_admin(request)
        return json_response({"roles": [{"id": r["id"], "name": r["name"]}
                                        for r in self.state.values("roles")]})

    async def v2_user_roles(self, request: web.Request) -> web.Response:
        require_admin(request)
        roles = self._roles_on(request.match_info["user_id"], request.match_info["tenant_id"],
                               None)
        return json_response({"roles": [{"id": r["id"], "name": r["name"]} for r in roles]})


def add_routes(router: web.UrlDispatcher, cloud: SimCloud) -> None:
    api = KeystoneAPI(cloud)
    v3 = f"{PREFIX}/v3"
    router.add_get(PREFIX, api.versions)
    router.add_get(f"{PREFIX}/", api.versions)
    router.add_get(v3, api.v3_version)
    router.add_get(f"{v3}/", api.v3_version)
    router.add_post(f"{v3}/auth/tokens", api.v3_issue_token)
    router.add_get(f"{v3}/auth/tokens", api.v3_validate_token)
    router.add_delete(f"{v3}/auth/tokens", api.v3_revoke_token)
    router.add_get(f"{v3}/domains", api.list_domains)
    router.add_get(f"{v3}/projects", api.list_projects)
    router.add_get(f"{v3}/users", api.list_users)
    router.add_get(f"{v3}/roles", api.list_roles)
    router.add_get(f"{v3}/role_assignments", api.list_role_assignments)
    router.add_get(f"{v3}/users/{{id}}/projects", api.user_projects)
    grant = f"{v3}/projects/{{project_id}}/users/{{user_id}}/roles/{{role_id}}"
    router.add_put(grant, api.grant)
    router.add_head(grant, api.check_grant)
    router.add_delete(grant, api.revoke)
    router.add_get(f"{v3}/projects/{{project_id}}/users/{{user_id}}/roles",
                   api.project_user_roles)
    if not cloud.profile.keystone_v2:
        tags = f"{v3}/projects/{{id}}/tags"
        router.add_get(tags, api.get_project_tags)
        router.add_put(tags, api.replace_project_tags)
        router.add_delete(tags, api.clear_project_tags)
        router.add_get(f"{tags}/{{tag}}", api.check_project_tag)
        router.add_put(f"{tags}/{{tag}}", api.add_project_tag)
        router.add_delete(f"{tags}/{{tag}}", api.remove_project_tag)
    kinds = "{kind:domains|projects|users|roles}"
    router.add_post(f"{v3}/{kinds}", api.create)
    router.add_get(f"{v3}/{kinds}/{{id}}", api.get_one)
    router.add_patch(f"{v3}/{kinds}/{{id}}", api.update)
    router.add_delete(f"{v3}/{kinds}/{{id}}", api.delete)
    if cloud.profile.keystone_v2:
        v2 = f"{PREFIX}/v2.0"
        router.add_get(v2, api.v2_version)
        router.add_get(f"{v2}/", api.v2_version)
        router.add_post(f"{v2}/tokens", api.v2_issue_token)
        router.add_get(f"{v2}/tenants", api.v2_tenants)
        router.add_get(f"{v2}/tenants/{{id}}", api.v2_tenant)
        router.add_get(f"{v2}/users", api.v2_users)
        router.add_get(f"{v2}/users/{{id}}", api.v2_user)
        router.add_get(f"{v2}/OS-KSADM/roles", api.v2_roles)
        router.add_get(f"{v2}/tenants/{{tenant_id}}/users/{{user_id}}/roles", api.v2_user_roles)
