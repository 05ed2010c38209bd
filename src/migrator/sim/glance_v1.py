"""Glance v1 (Liberty only): ``HEAD``/``GET /v1/images/{id}``, ``GET /v1/images`` and
``GET /v1/images/detail``, read-only, as glance/api/v1 and glance/registry at liberty (11.0.2)
serve them.

- Metadata travels in ``x-image-meta-<field>`` and ``x-image-meta-property-<key>`` headers
  (``image_meta_to_http_headers``): names lower-cased, values ``str()``-ed so booleans read
  ``True``/``False``, None values left out; plus ``ETag`` = checksum.
- ``GET /v1/images/{id}`` answers the bytes with those headers; a non-active image is 404.
- Listings hold ``{"images": [...]}`` (detail with a ``properties`` dict), 25 by default
  (``limit_param_default``), at most 1000, sorted by ``created_at`` desc, paged with
  ``marker=``; there is no next link. The registry reads ``is_public`` only from admins and
  defaults it to True, which for an admin means "as a regular user": public, own and member
  images; ``is_public=None`` lists everything.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.content import iter_async
from migrator.sim.glance_access import (
    PREFIX,
    GlanceRules,
    membership,
    visible_image,
)
from migrator.sim.http import (
    AuthContext,
    SimHTTPError,
    auth_of,
    json_response,
    stream_response,
)
from migrator.sim.state import Record

V1 = f"{PREFIX}/v1"
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
FILTERS = ("name", "status", "container_format", "disk_format", "min_ram", "min_disk",
           "size_min", "size_max", "changes-since", "protected")
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id",
             "created_at", "updated_at")
INDEX_FIELDS = ("id", "name", "size", "disk_format", "container_format", "checksum")


def v1_time(value: Any) -> str | None:
    """The registry's datetime form: '2015-10-14T12:34:56.000000' (no zone)."""
    if value is None:
        return None
    text = str(value).rstrip("Z")
    if "." not in text:
        text += ".000000"
    return text


def v1_image(image: Record) -> dict[str, Any]:
    """The registry's image dict (``make_image_dict``), locations left out as the API does."""
    return {
        "id": image["id"],
        "name": image.get("name"),
        "status": image.get("status"),
        "size": image.get("size"),
        "virtual_size": image.get("virtual_size"),
        "disk_format": image.get("disk_format"),
        "container_format": image.get("container_format"),
        "min_disk": image.get("min_disk") or 0,
        "min_ram": image.get("min_ram") or 0,
        "is_public": image.get("visibility") == "public",
        "checksum": image.get("checksum"),
        "owner": image.get("owner"),
        "protected": bool(image.get("protected")),
        "created_at": v1_time(image.get("created_at")),
        "updated_at": v1_time(image.get("updated_at")),
        "deleted_at": None,
        "deleted": False,
        "properties": dict(image.get("properties") or {}),
    }


def meta_headers(image: Record) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in v1_image(image).items():
        if value is None:
            continue
        if key == "properties":
            for prop, prop_value in value.items():
                if prop_value is not None:
                    headers[f"x-image-meta-property-{prop.lower()}"] = str(prop_value)
        else:
            headers[f"x-image-meta-{key.lower()}"] = str(value)
    if image.get("checksum"):
        headers["ETag"] = str(image["checksum"])
    return headers


def parse_bool(raw: str) -> bool | None:
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return None


class GlanceV1:
    def __init__(self, cloud: SimCloud, rules: GlanceRules) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.rules = rules

    def _image(self, request: web.Request) -> Record:
        ctx = auth_of(request)
        image_id = request.match_info["image_id"]
        try:
            return visible_image(self.cloud, self.rules, ctx, image_id)
        except SimHTTPError as exc:
            raise SimHTTPError(404, f"Image with identifier {image_id} not found") from exc

    async def head(self, request: web.Request) -> web.Response:
        image = self._image(request)
        return web.Response(status=200, headers=meta_headers(image))

    async def head_detail(self, request: web.Request) -> web.Response:
        raise SimHTTPError(405, "This operation is currently not permitted on Glance images "
                                "details.", headers={"Allow": "GET"})

    async def show(self, request: web.Request) -> web.StreamResponse:
        image = self._image(request)
        if image.get("status") == "deactivated":
            raise SimHTTPError(403, "The requested image has been deactivated. Image data "
                                    "download is forbidden.")
        spec = image.get("_content")
        if image.get("status") != "active" or not spec:
            raise SimHTTPError(404, f"Image {image['id']} is not active")
        headers = meta_headers(image)
        headers["Content-Type"] = "application/octet-stream"
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = int(image.get("size") or 0)
        return await stream_response(request, response,
                                     iter_async(self.cloud.chunks(spec)))

    async def index(self, request: web.Request) -> web.Response:
        images = self._listing(request)
        return json_response({"images": [{k: v1_image(i)[k] for k in INDEX_FIELDS}
                                         for i in images]})

    async def detail(self, request: web.Request) -> web.Response:
        return json_response({"images": [v1_image(i) for i in self._listing(request)]})

    # -- listing -----------------------------------------------------------------------------
    def _listing(self, request: web.Request) -> list[Record]:
        ctx = auth_of(request)
        params = request.query
        limit = self._limit(params.get("limit"))
        sort_key = params.get("sort_key", "created_at")
        if sort_key not in SORT_KEYS:
            raise SimHTTPError(400, f"Unsupported sort_key. Acceptable values: "
                                    f"{', '.join(SORT_KEYS)}")
        sort_dir = params.get("sort_dir", "desc")
        if sort_dir not in ("asc", "desc"):
            raise SimHTTPError(400, "Unsupported sort_dir. Acceptable values: asc, desc")
        scope = self._scope(ctx, params.get("is_public"))
        images = [i for i in self.state.values("images")
                  if i.get("status") not in ("killed", "deleted")
                  and scope(i) and self._matches(i, params)]
        # Ties on the sort key fall back to created_at then id, in the same direction.
        keys = [sort_key] + [k for k in ("created_at", "id") if k != sort_key]
        images.sort(key=lambda i: tuple(_sortable(i.get(k)) for k in keys),
                    reverse=sort_dir == "desc")
        marker = params.get("marker")
        if marker:
            try:
                uuid.UUID(marker)
            except ValueError as exc:
                raise SimHTTPError(400, "Invalid marker format") from exc
            ids = [i["id"] for i in images]
            if marker not in ids:
                raise SimHTTPError(400, "Invalid marker. Image could not be found.")
            images = images[ids.index(marker) + 1:]
        return images[:limit]

    @staticmethod
    def _limit(raw: str | None) -> int:
        if raw is None:
            return DEFAULT_LIMIT
        try:
            limit = int(raw)
        except ValueError as exc:
            raise SimHTTPError(400, "limit param must be an integer") from exc
        if limit < 0:
            raise SimHTTPError(400, "limit param must be positive")
        return min(limit, MAX_LIMIT)

    def _scope(self, ctx: AuthContext, raw_is_public: str | None) -> Any:
        """Which images a caller lists, from the registry's ``_get_images`` rules."""
        def as_user(image: Record) -> bool:
            if image.get("visibility") == "public" or image.get("owner") is None:
                return True
            if ctx.project_id is not None and image.get("owner") == ctx.project_id:
                return True
            # v1 lists shared images whatever the member status (LP #1132294).
            return membership(self.cloud, image["id"], ctx.project_id) is not None

        if not ctx.is_admin:
            return as_user
        if raw_is_public is None:
            return as_user
        if raw_is_public.lower() == "none":
            return lambda image: True
        wanted = parse_bool(raw_is_public)
        if wanted is None:
            raise SimHTTPError(400, "is_public must be None, True, or False")
        if wanted:
            return as_user
        return lambda image: image.get("visibility") != "public"

    @staticmethod
    def _matches(image: Record, params: Any) -> bool:
        for key, raw in params.items():
            if key.startswith("property-"):
                if (image.get("properties") or {}).get(key[9:]) != raw:
                    return False
            elif key in ("size_min", "size_max"):
                try:
                    bound = int(raw)
                except ValueError as exc:
                    raise SimHTTPError(400, f"Bad value passed to filter {key} got "
                                            f"{raw}") from exc
                size = image.get("size")
                if size is None or (size < bound if key == "size_min" else size > bound):
                    return False
            elif key == "protected":
                wanted = parse_bool(raw)
                if wanted is None:
                    raise SimHTTPError(400, "protected must be True, or False")
                if bool(image.get("protected")) != wanted:
                    return False
            elif key == "changes-since":
                if (v1_time(image.get("updated_at")) or "") <= (v1_time(raw) or ""):
                    return False
            elif key in FILTERS and str(image.get(key)) != raw:
                return False
        return True


def _sortable(value: Any) -> tuple[bool, Any]:
    if value is None:
        return (False, "")
    return (True, value if isinstance(value, int) else str(value))


def add_routes(router: web.UrlDispatcher, cloud: SimCloud, rules: GlanceRules) -> None:
    api = GlanceV1(cloud, rules)
    router.add_get(f"{V1}/images", api.index, allow_head=False)
    router.add_get(f"{V1}/images/detail", api.detail, allow_head=False)
    router.add_head(f"{V1}/images/detail", api.head_detail)
    router.add_head(f"{V1}/images/{{image_id}}", api.head)
    router.add_get(f"{V1}/images/{{image_id}}", api.show, allow_head=False)
