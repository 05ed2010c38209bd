"""Glance: version discovery and the v2 image metadata API (list, show, create, JSON-patch
update, delete, tags, schemas). Validation and schemas are in glance_schema.py, access rules
in glance_access.py, image bytes in glance_data.py, members in glance_members.py, the
Liberty-only v1 API in glance_v1.py.

Behaviour follows glance/api/v2/images.py at liberty (11.0.2) and master: listing defaults
to 25 images sorted by ``created_at`` then ``id`` descending, at most 1000, with a relative
``next`` link whenever a page is full; unknown query keys filter on extra properties; extra
property values must be strings; read-only attributes answer 403, schema violations 400.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from migrator.sim import glance_data, glance_members, glance_v1
from migrator.sim.cloud import SimCloud
from migrator.sim.glance_access import (
    PREFIX,
    GlanceRules,
    can_modify,
    has_members,
    listed_by_default,
    member_listed,
    read_any_json,
    visible_image,
)
from migrator.sim.glance_schema import (
    CORE,
    DISALLOWED,
    LIBERTY_RESERVED_EXTRA,
    MODERN_CORE,
    MODERN_READONLY,
    PATCH_TYPES,
    READONLY,
    RESERVED,
    check_core,
    check_extra,
    parse_patch,
    schema_documents,
)
from migrator.sim.http import (
    AuthContext,
    SimHTTPError,
    auth_of,
    json_response,
    origin,
    parse_limit,
    public,
)
from migrator.sim.images import delete_image, new_image
from migrator.sim.state import Record, now_iso

V2 = f"{PREFIX}/v2"
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
LISTINGS_KEPT = 8  # listings whose sorted selection is kept (see GlanceImages._ordered)
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id",
             "created_at", "updated_at")
FILTER_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "in")


class GlanceImages:
    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.rules = GlanceRules.for_profile(cloud.profile)
        self._listings: dict[Any, tuple[int, list[Record], dict[str, int]]] = {}

    # -- discovery -------------------------------------------------------------------------
    @public
    async def versions(self, request: web.Request) -> web.Response:
        base = f"{origin(request)}{PREFIX}"
        versions = self.cloud.profile.glance_versions
        current = versions[0]
        docs = [{"id": v, "status": "CURRENT" if v == current else "SUPPORTED",
                 "links": [{"rel": "self", "href": f"{base}/{v.split('.')[0]}/"}]}
                for v in versions]
        return json_response({"versions": docs}, status=300)

    # -- rendering -------------------------------------------------------------------------
    def render(self, image: Record) -> dict[str, Any]:
        """Extra properties flat at the top level, then the core attributes and links."""
        view: dict[str, Any] = dict(image.get("properties") or {})
        for key in CORE:
            view[key] = image.get(key)
        view["tags"] = list(image.get("tags") or [])
        view["visibility"] = self.rules.rendered_visibility(image)
        view["protected"] = bool(image.get("protected"))
        if self.rules.modern:
            view["os_hidden"] = bool(image.get("os_hidden"))
            view["os_hash_algo"] = image.get("os_hash_algo")
            view["os_hash_value"] = image.get("os_hash_value")
        view["self"] = f"/v2/images/{image['id']}"
        view["file"] = f"/v2/images/{image['id']}/file"
        view["schema"] = "/v2/schemas/image"
        return view

    # -- listing ---------------------------------------------------------------------------
    async def list_images(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        params = request.query
        if "changes-since" in params:
            raise SimHTTPError(400, 'The "changes-since" filter is no longer available on v2.')
        member_status = params.get("member_status", "accepted")
        if member_status not in ("pending", "accepted", "rejected", "all"):
            raise SimHTTPError(400, f"Invalid status: {member_status}")
        visibility = params.get("visibility")
        allowed = (*self.rules.visibilities, "all") if self.rules.modern else (
            "public", "private", "shared")
        if visibility and visibility not in allowed:
            raise SimHTTPError(400, f"Invalid visibility value: {visibility}")
        sort_keys, sort_dirs = self._sorting(request)
        limit = parse_limit(request, DEFAULT_LIMIT, MAX_LIMIT)
        assert limit is not None
        ordered, position = self._ordered(ctx, member_status, visibility, params, sort_keys,
                                          sort_dirs)
        marker = params.get("marker")
        if marker and marker in position:
            ordered = ordered[position[marker] + 1:]
        elif marker:
            try:
                marker_image = visible_image(self.cloud, self.rules, ctx, marker)
            except SimHTTPError as exc:
                raise SimHTTPError(400, f"Marker {marker} could not be found.") from exc
            # Glance pages by comparing sort keys with the marker's, so the marker need not
            # match the filters: place it in the order and start right after it.
            ordered = sort_images([*ordered, marker_image], sort_keys, sort_dirs)
            ordered = ordered[ordered.index(marker_image) + 1:]
        chunk = ordered[:limit]
        query = [(k, v) for k, v in params.items() if k != "marker"]
        body: dict[str, Any] = {"images": [self.render(i) for i in chunk],
                                "first": "/v2/images" + (f"?{urlencode(query)}" if query else ""),
                                "schema": "/v2/schemas/images"}
        # Glance announces a next page whenever the page is full, even if nothing follows.
        if chunk and len(chunk) == limit:
            body["next"] = "/v2/images?" + urlencode([*query, ("marker", chunk[-1]["id"])])
        return json_response(body)

    def _ordered(self, ctx: AuthContext, member_status: str, visibility: str | None,
                 params: Any, sort_keys: list[str], sort_dirs: list[str]
                 ) -> tuple[list[Record], dict[str, int]]:
        """The images a listing selects, sorted, with each one's position. Kept until the
        state changes (per caller and query, marker and limit aside): every page of 20,000
        images filtered and sorted them all again."""
        key = (ctx.project_id, ctx.is_admin, member_status, visibility, tuple(sort_keys),
               tuple(sort_dirs), tuple(sorted((k, v) for k, v in params.items()
                                              if k not in ("marker", "limit"))))
        found = self._listings.get(key)
        if found is not None and found[0] == self.state.generation:
            return found[1], found[2]
        candidates = [i for i in self._indexed_candidates(params)
                      if i.get("status") not in ("killed", "deleted")]
        selected = [i for i in candidates
                    if self._in_scope(ctx, i, member_status, visibility)
                    and self._matches(i, params)]
        ordered = sort_images(selected, sort_keys, sort_dirs)
        position = {image["id"]: n for n, image in enumerate(ordered)}
        if len(self._listings) >= LISTINGS_KEPT:
            self._listings.pop(next(iter(self._listings)))
        self._listings[key] = (self.state.generation, ordered, position)
        return ordered, position

    def _indexed_candidates(self, params: Any) -> list[Record]:
        """The images a filtered listing may select, in the collection's order: those of the
        first queried tag, else of the queried owner, from the state's indexes; else all.
        The listing's own filters then apply to them as to all."""
        tags = [t.strip() for t in params.getall("tag", [])]
        if tags:
            return self.state.tagged("images", tags[0])
        owner = params.get("owner")
        if owner is not None:  # owners are project ids (strings), compared as strings
            return self.state.lookup("images", "owner", owner)
        return list(self.state.values("images"))

    def _in_scope(self, ctx: AuthContext, image: Record, member_status: str, visibility: str | None
                  ) -> bool:
        rules = self.rules
        if not rules.modern and visibility == "shared":
            # Liberty answers visibility=shared from the member table alone.
            if ctx.is_admin:
                return has_members(self.cloud, image["id"])
            return member_listed(self.cloud, rules, ctx, image, member_status)
        if not listed_by_default(self.cloud, rules, ctx, image, member_status):
            return False
        if not rules.modern:
            if visibility == "public":
                return bool(image.get("visibility") == "public")
            if visibility == "private":
                return image.get("visibility") != "public"
            return True
        if visibility:
            return visibility == "all" or image.get("visibility") == visibility
        return image.get("owner") == ctx.project_id or image.get("visibility") != "community"

    def _matches(self, image: Record, params: Any) -> bool:
        tags = params.getall("tag", [])
        if any(t.strip() not in (image.get("tags") or []) for t in tags):
            return False
        if self.rules.modern:
            hidden = params.get("os_hidden", "false").lower()
            if hidden not in ("true", "false"):
                raise SimHTTPError(400, f"Invalid value '{hidden}' for 'os_hidden' filter. "
                                        "Valid values are 'true' or 'false'.")
            if bool(image.get("os_hidden")) != (hidden == "true"):
                return False
        skip = {"limit", "marker", "member_status", "tag", "sort_key", "sort_dir", "sort",
                "visibility"}
        if self.rules.modern:
            skip.add("os_hidden")
        for key, raw in params.items():
            if key in skip:
                continue
            if not self._matches_one(image, key, raw):
                return False
        return True

    def _matches_one(self, image: Record, key: str, raw: str) -> bool:
        if key.endswith(("_min", "_max")):
            try:
                bound = int(raw)
            except ValueError as exc:
                raise SimHTTPError(400, "Unable to filter on a range with a non-numeric "
                                        "value.") from exc
            value = image.get(key[:-4])
            if value is None:
                return False
            return bool(value >= bound if key.endswith("_min") else value <= bound)
        if key == "protected":
            if self.rules.modern and raw not in ("true", "false"):
                raise SimHTTPError(400, f"Invalid value '{raw}' for 'protected' filter. "
                                        "Valid values are 'true' or 'false'.")
            return bool(image.get("protected")) == (raw.lower() in ("true", "1"))
        core = set(CORE) | ({"os_hash_value"} if self.rules.modern else set())
        if key in core:
            value = image.get(key)
            if self.rules.modern and key in ("name", "id", "status", "container_format",
                                             "disk_format", "created_at", "updated_at"):
                return compare_with_operator(key, value, raw)
            return value is not None and str(value) == raw
        return bool((image.get("properties") or {}).get(key) == raw)

    def _sorting(self, request: web.Request) -> tuple[list[str], list[str]]:
        params = request.query
        keys: list[str] = []
        dirs: list[str] = []
        if "sort" in params:
            if "sort_key" in params or "sort_dir" in params:
                raise SimHTTPError(400, "Old and new sorting syntax cannot be combined")
            for part in params["sort"].strip().split(","):
                key, _, direction = part.partition(":")
                keys.append(valid_sort_key(key.strip()))
                dirs.append(valid_sort_dir((direction or "desc").strip()))
        else:
            keys = [valid_sort_key(k.strip()) for k in params.getall("sort_key", [])]
            dirs = [valid_sort_dir(d.strip()) for d in params.getall("sort_dir", [])]
            if len(dirs) > 1 and len(dirs) != len(keys):
                raise SimHTTPError(400, "Number of sort dirs does not match the number of "
                                        "sort keys")
        keys = keys or ["created_at"]
        dirs = dirs or ["desc"]
        default_dir = dirs[0]
        if len(dirs) == 1:
            dirs = dirs * len(keys)
        for key in ("created_at", "id"):
            if key not in keys:
                keys.append(key)
                dirs.append(default_dir)
        return keys, dirs

    # -- one image -------------------------------------------------------------------------
    async def show(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        image = visible_image(self.cloud, self.rules, ctx, request.match_info["image_id"])
        return json_response(self.render(image))

    async def create(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await read_any_json(request)
        if not isinstance(body, dict):
            raise SimHTTPError(400, "Request body must be a JSON object.")
        for key in DISALLOWED + (("stores",) if self.rules.modern else ()):
            if key in body:
                raise SimHTTPError(403, f"Attribute '{key}' is read-only.")
        core_keys = set(CORE) | ({"os_hidden"} if self.rules.modern else set())
        core_keys |= set(READONLY) | set(MODERN_READONLY if self.rules.modern else ())
        if not self.rules.modern:
            core_keys.discard("owner")
        fields: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for key, value in body.items():
            if key in core_keys:
                check_core(self.rules, key, value)
                fields[key] = value
            else:
                check_extra(self.rules, key, value)
                extra[key] = value
        for key in READONLY + (MODERN_READONLY if self.rules.modern else ()):
            if key in fields and key != "id":
                raise SimHTTPError(403, f"Attribute '{key}' is read-only.")
        reserved = (*RESERVED, "locations") if self.rules.modern else LIBERTY_RESERVED_EXTRA
        for key in extra:
            if self.rules.modern and len(key) > 255:
                raise SimHTTPError(400, "Custom property should not be greater than 255 "
                                        "characters.")
            if key in reserved:
                raise SimHTTPError(403, f"Attribute '{key}' is reserved.")
        owner = fields.pop("owner", ctx.project_id)
        if not ctx.is_admin and owner != ctx.project_id:
            raise SimHTTPError(403, f"You are not permitted to create images owned by "
                                    f"'{owner}'.")
        image_id = fields.pop("id", None)
        if image_id is not None and self.state.get("images", image_id) is not None:
            raise SimHTTPError(409, f"Image with identifier {image_id} already exists!")
        if "visibility" not in fields:
            fields["visibility"] = "shared" if self.rules.modern else "private"
        if self.rules.modern:
            fields["os_hidden"] = bool(fields.get("os_hidden", False))
        fields["tags"] = list(dict.fromkeys(fields.get("tags") or []))
        image = new_image(self.cloud, name=fields.pop("name", None), owner=owner, id=image_id,
                          properties=extra, **fields)
        return json_response(self.render(image), status=201,
                             headers={"Location": f"/v2/images/{image['id']}"})

    async def update(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in PATCH_TYPES:
            raise SimHTTPError(415, f"Unsupported Content-Type {content_type!r}",
                               headers={"Accept-Patch": ", ".join(sorted(PATCH_TYPES))})
        draft = PATCH_TYPES[content_type]
        changes = parse_patch(await read_any_json(request), draft)
        image = visible_image(self.cloud, self.rules, ctx, request.match_info["image_id"])
        readonly = READONLY + (MODERN_READONLY if self.rules.modern else ())
        for op, path, _value in changes:
            if op != "remove":
                if path in readonly:
                    raise SimHTTPError(403, f"Attribute '{path}' is read-only.")
                if path in RESERVED:
                    raise SimHTTPError(403, f"Attribute '{path}' is reserved.")
        if not can_modify(ctx, image):
            raise SimHTTPError(403, "You are not permitted to modify this image.")
        # Apply to a copy so that a refused change leaves the image as it was.
        work = {**image, "properties": dict(image.get("properties") or {}),
                "tags": list(image.get("tags") or [])}
        for op, path, value in changes:
            self._apply(ctx, work, op, path, value, draft)
        work["updated_at"] = now_iso()
        image.update(work)
        self.state.touch("images", image)
        return json_response(self.render(image))

    def _core_attributes(self) -> set[str]:
        core = set(CORE) | set(READONLY)
        if self.rules.modern:
            core |= set(MODERN_CORE)
        return core

    def _apply(self, ctx: AuthContext, image: Record, op: str, path: str, value: Any,
               draft: int) -> None:
        props: dict[str, str] = image["properties"]
        is_core = path in self._core_attributes()
        if path == "locations":
            raise SimHTTPError(403, "It's not allowed to update locations if locations are "
                                    "invisible.")
        if op == "remove":
            if is_core:
                raise SimHTTPError(403, f"Property {path} may not be removed.")
            if path not in props:
                raise SimHTTPError(409, f"Property {path} does not exist.")
            del props[path]
            return
        if is_core:
            check_core(self.rules, path, value)
        else:
            check_extra(self.rules, path, value)
        if op == "replace" and not is_core and path not in props:
            raise SimHTTPError(409, f"Property {path} does not exist.")
        if op == "add" and draft == 4 and (is_core or path in props):
            raise SimHTTPError(409, f"Property {path} already present.")
        if path == "owner" and not ctx.is_admin:
            raise SimHTTPError(403, "Owner can't be updated by non admin.")
        if is_core:
            image[path] = list(dict.fromkeys(value)) if path == "tags" else value
        else:
            props[path] = value

    async def delete(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        image_id = request.match_info["image_id"]
        try:
            image = visible_image(self.cloud, self.rules, ctx, image_id)
        except SimHTTPError as exc:
            raise SimHTTPError(404, f"Failed to find image {image_id} to delete") from exc
        if not can_modify(ctx, image):
            raise SimHTTPError(403, "You are not permitted to delete this image.")
        if image.get("protected"):
            raise SimHTTPError(403, f"Image {image_id} is protected and cannot be deleted.")
        delete_image(self.cloud, image)
        return web.Response(status=204)

    # -- tags ------------------------------------------------------------------------------
    async def add_tag(self, request: web.Request) -> web.Response:
        image = self._mutable(request)
        tag = request.match_info["tag"]
        if len(tag) > 255:
            raise SimHTTPError(400, "Provided object does not match schema 'image': tag too "
                                    "long")
        if tag not in image["tags"]:
            image["tags"].append(tag)
            image["updated_at"] = now_iso()
            self.state.touch("images", image)
        return web.Response(status=204)

    async def delete_tag(self, request: web.Request) -> web.Response:
        image = self._mutable(request)
        tag = request.match_info["tag"]
        if tag not in image["tags"]:
            raise SimHTTPError(404, f"Tag {tag} not found.")
        image["tags"].remove(tag)
        image["updated_at"] = now_iso()
        self.state.touch("images", image)
        return web.Response(status=204)

    async def schema(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        documents = schema_documents(self.rules)
        if name not in documents:
            raise SimHTTPError(404, f"No schema named {name}")
        return json_response(documents[name])

    def _mutable(self, request: web.Request) -> Record:
        ctx = auth_of(request)
        image = visible_image(self.cloud, self.rules, ctx, request.match_info["image_id"])
        if not can_modify(ctx, image):
            raise SimHTTPError(403, "You are not permitted to modify this image.")
        image.setdefault("tags", [])
        return image

# -- helpers ----------------------------------------------------------------------------------
def valid_sort_key(key: str) -> str:
    if key not in SORT_KEYS:
        raise SimHTTPError(400, f"Invalid sort key: {key}. It must be one of the following: "
                                f"{', '.join(SORT_KEYS)}.")
    return key


def valid_sort_dir(direction: str) -> str:
    if direction not in ("asc", "desc"):
        raise SimHTTPError(400, f"Invalid sort direction: {direction}")
    return direction


def sort_images(images: list[Record], keys: list[str], dirs: list[str]) -> list[Record]:
    """Sort like SQL on several keys with their own directions (NULLs lowest)."""
    ordered = list(images)
    for key, direction in reversed(list(zip(keys, dirs, strict=True))):
        ordered.sort(key=functools.partial(sort_value, key=key), reverse=direction == "desc")
    return ordered


def sort_value(image: Record, key: str) -> tuple[bool, Any]:
    value = image.get(key)
    if value is None:
        return (False, 0 if key == "size" else "")
    return (True, value if key == "size" else str(value))


def compare_with_operator(key: str, value: Any, raw: str) -> bool:
    """Modern Glance's ``op:value`` filters (``in:a,b``, ``gte:2020-01-01T00:00:00Z``)."""
    operator, sep, operand = raw.partition(":")
    if not sep or operator not in FILTER_OPERATORS or (
            key not in ("created_at", "updated_at") and operator not in ("eq", "in")):
        if sep and operator in FILTER_OPERATORS:
            raise SimHTTPError(400, f"Unable to filter by unknown operator '{operator}'.")
        operator, operand = "eq", raw
    if value is None:
        return False
    text = str(value)
    if operator == "in":
        return text in [part.strip().strip('"') for part in operand.split(",")]
    if key in ("created_at", "updated_at"):
        operand = operand.replace("+00:00", "Z")
        text = text.replace("+00:00", "Z")
    return {
        "eq": text == operand, "neq": text != operand, "gt": text > operand,
        "gte": text >= operand, "lt": text < operand, "lte": text <= operand,
    }[operator]


def add_routes(router: web.UrlDispatcher, cloud: SimCloud) -> None:
    api = GlanceImages(cloud)
    router.add_get(PREFIX, api.versions)
    router.add_get(f"{PREFIX}/", api.versions)
    router.add_get(f"{PREFIX}/versions", api.versions)
    router.add_get(f"{V2}/images", api.list_images, allow_head=False)
    router.add_post(f"{V2}/images", api.create)
    router.add_get(f"{V2}/images/{{image_id}}", api.show, allow_head=False)
    router.add_patch(f"{V2}/images/{{image_id}}", api.update)
    router.add_delete(f"{V2}/images/{{image_id}}", api.delete)
    router.add_put(f"{V2}/images/{{image_id}}/tags/{{tag}}", api.add_tag)
    router.add_delete(f"{V2}/images/{{image_id}}/tags/{{tag}}", api.delete_tag)
    router.add_get(f"{V2}/schemas/{{name}}", api.schema, allow_head=False)
    glance_data.add_routes(router, cloud, api.rules)
    glance_members.add_routes(router, cloud, api.rules)
    if cloud.profile.glance_v1:
        glance_v1.add_routes(router, cloud, api.rules)
