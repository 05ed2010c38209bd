"""What Cinder's routes share: the API version of a request, the project in the URL, volume
types, quota limits and usage.

Internal forms (written by the seed loader too):

* ``volume_types``: ``{id, name, description, is_public, extra_specs}``; ``_access`` is the
  list of project ids a private type is shared with.
* ``quotas``: ``{"id": "volume:<project_id>", "service": "volume", "project_id", "limits"}``;
  keys missing from ``limits`` take the defaults below.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.http import AuthContext, SimHTTPError, auth_of
from migrator.sim.microversion import MicroversionRange, at_least
from migrator.sim.state import Record

PREFIX = "/volume"
GIB = 1 << 30
# The type Cinder's database migration creates since Train; Liberty has no default type.
MODERN_DEFAULT_TYPE = "__DEFAULT__"
API_VERSION_KEY = web.RequestKey("cinder_api", str)

QUOTA_DEFAULTS_LIBERTY = {"volumes": 10, "snapshots": 10, "gigabytes": 1000, "backups": 10,
                          "backup_gigabytes": 1000, "per_volume_gigabytes": -1,
                          "consistencygroups": 10}
QUOTA_DEFAULTS_MODERN = {"volumes": 10, "snapshots": 10, "gigabytes": 1000, "backups": 10,
                         "backup_gigabytes": 1000, "per_volume_gigabytes": -1, "groups": 10}
PER_TYPE_KEYS = ("volumes", "gigabytes", "snapshots")


def api_version(request: web.Request) -> str:
    """``v1``, ``v2`` or ``v3``: the API the request came through."""
    return str(request.get(API_VERSION_KEY, "v2"))


def microversion_range(cloud: SimCloud) -> MicroversionRange | None:
    top = cloud.profile.cinder_max_microversion
    if top is None:
        return None
    return MicroversionRange(service="volume", minimum="3.0", maximum=top)


def mv_at_least(request: web.Request, wanted: str) -> bool:
    """True on v3 at ``wanted`` or later (v1/v2 have no microversions)."""
    return api_version(request) == "v3" and at_least(request, wanted)


def check_url_project(request: web.Request) -> AuthContext:
    """Cinder refuses a URL whose project is not the token's ("Malformed request url")."""
    ctx = auth_of(request)
    pid = request.match_info.get("project_id")
    if pid and pid != ctx.project_id:
        raise SimHTTPError(400, "Malformed request url")
    return ctx


# -- volume types ------------------------------------------------------------------------------
def type_visible(ctx: AuthContext, vtype: Record) -> bool:
    return ctx.is_admin or vtype.get("is_public", True) or (
        ctx.project_id in (vtype.get("_access") or []))


def find_type(cloud: SimCloud, ref: str) -> Record | None:
    """A volume type by id or by name, as Cinder resolves ``volume_type`` on create."""
    return cloud.state.get("volume_types", ref) or cloud.state.find_one("volume_types", name=ref)


def default_type(cloud: SimCloud) -> Record | None:
    if cloud.profile.cinder_max_microversion is None:
        return None
    return cloud.state.find_one("volume_types", name=MODERN_DEFAULT_TYPE)


def ensure_default_type(cloud: SimCloud) -> None:
    if cloud.profile.cinder_max_microversion is not None and default_type(cloud) is None:
        cloud.state.put("volume_types", {
            "id": "00000000-0000-4000-8000-00000000d0ef", "name": MODERN_DEFAULT_TYPE,
            "description": "Default Volume Type", "is_public": True, "extra_specs": {}})


# -- quotas ------------------------------------------------------------------------------------
def quota_defaults(cloud: SimCloud) -> dict[str, int]:
    base = QUOTA_DEFAULTS_LIBERTY if cloud.profile.cinder_max_microversion is None else (
        QUOTA_DEFAULTS_MODERN)
    out = dict(base)
    for vtype in cloud.state.values("volume_types"):
        for key in PER_TYPE_KEYS:
            out[f"{key}_{vtype['name']}"] = -1
    return out


def quota_limits(cloud: SimCloud, project_id: str) -> dict[str, int]:
    limits = quota_defaults(cloud)
    rec = cloud.state.get("quotas", f"volume:{project_id}")
    if rec is not None:
        limits.update({k: int(v) for k, v in rec.get("limits", {}).items() if k in limits})
    return limits


def quota_usage(cloud: SimCloud, project_id: str) -> dict[str, int]:
    used = dict.fromkeys(quota_defaults(cloud), 0)
    for vol in cloud.state.where("volumes", "project_id", project_id):
        size = int(vol.get("size") or 0)
        used["volumes"] += 1
        used["gigabytes"] += size
        tname = vol.get("volume_type")
        if tname and f"volumes_{tname}" in used:
            used[f"volumes_{tname}"] += 1
            used[f"gigabytes_{tname}"] += size
    # Snapshots hold their own quota and count in gigabytes, as Cinder reserves them.
    for snap in cloud.state.where("snapshots", "project_id", project_id):
        used["snapshots"] += 1
        used["gigabytes"] += int(snap.get("size") or 0)
    return used


def check_volume_quota(cloud: SimCloud, project_id: str, size: int, type_name: str | None,
                       *, count: int = 1) -> None:
    """Refuse a new volume (``count`` 1) or a growth (``count`` 0) as Cinder's QuotaError."""
    limits = quota_limits(cloud, project_id)
    used = quota_usage(cloud, project_id)
    per_volume = limits.get("per_volume_gigabytes", -1)
    if count and per_volume >= 0 and size > per_volume:
        raise SimHTTPError(413, f"Requested volume size {size}G is larger than maximum "
                                f"allowed limit {per_volume}G.", headers={"Retry-After": "0"})
    names = ["volumes", "gigabytes"]
    if type_name:
        names += [f"volumes_{type_name}", f"gigabytes_{type_name}"]
    for name in names:
        limit = limits.get(name, -1)
        if limit < 0:
            continue
        if name.startswith("volumes"):
            if count and used[name] + count > limit:
                raise SimHTTPError(413, f"Maximum number of volumes allowed ({limit}) exceeded "
                                        f"for quota '{name}'.", headers={"Retry-After": "0"})
        elif used[name] + size > limit:
            raise SimHTTPError(
                413, f"Requested volume or snapshot exceeds allowed {name} quota. Requested "
                     f"{size}G, quota is {limit}G and {used[name]}G has been consumed.",
                headers={"Retry-After": "0"})


def image_visible(ctx: AuthContext, cloud: SimCloud, image: Record) -> bool:
    """Whether the caller may read an image (Glance's rule, for create-from-image)."""
    if ctx.is_admin or image.get("owner") == ctx.project_id:
        return True
    if image.get("visibility") in ("public", "community"):
        return True
    member = cloud.state.get("image_members", f"{image['id']}:{ctx.project_id}")
    return member is not None and member.get("status") != "rejected"


def bool_param(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "t", "yes", "y", "on"):
        return True
    if text in ("0", "false", "f", "no", "n", "off", ""):
        return False
    raise SimHTTPError(400, f"Unrecognized value '{value}', acceptable values are: '0', '1', "
                            "'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'")
