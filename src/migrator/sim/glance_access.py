"""Who may see and change a Glance image, per profile, as Glance's own code decides it.

Shared by the v2 metadata routes (glance.py), the image data routes (glance_data.py) and the
Liberty v1 routes (glance_v1.py). Facts from glance/db/sqlalchemy/api.py
(``is_image_visible``, ``_select_images_query``) at liberty (11.0.2) and master:

- an admin sees every image, an image without owner is seen by everyone;
- Liberty: public images, own images and images the project is a member of (any member
  status for a GET, ``member_status`` for a listing) are visible; members exist on any
  non-public image;
- modern: public and community images, own images, and ``shared`` images the project is a
  member of; members exist only on ``shared`` images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.http import AuthContext, SimHTTPError
from migrator.sim.profiles import Profile
from migrator.sim.state import Record

PREFIX = "/image"

# Disk and container formats a Glance accepts by default (glance/common/config.py).
LIBERTY_DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vmdk", "raw", "qcow2", "vdi", "iso")
MODERN_DISK_FORMATS = (*LIBERTY_DISK_FORMATS, "vhdx", "ploop")
LIBERTY_CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova")
MODERN_CONTAINER_FORMATS = (*LIBERTY_CONTAINER_FORMATS, "docker", "compressed")
MEMBER_STATUSES = ("pending", "accepted", "rejected")


@dataclass(frozen=True)
class GlanceRules:
    """The Glance release behind a profile. os_hidden and the multihash arrived together
    (Rocky), so ``modern`` follows the profile's multihash flag."""

    modern: bool
    visibilities: tuple[str, ...]
    disk_formats: tuple[str, ...]
    container_formats: tuple[str, ...]

    @classmethod
    def for_profile(cls, profile: Profile) -> GlanceRules:
        modern = profile.glance_multihash
        return cls(
            modern=modern,
            visibilities=profile.glance_visibilities,
            disk_formats=MODERN_DISK_FORMATS if modern else LIBERTY_DISK_FORMATS,
            container_formats=MODERN_CONTAINER_FORMATS if modern else LIBERTY_CONTAINER_FORMATS,
        )

    def rendered_visibility(self, image: Record) -> str:
        """Liberty knows only public/private (a seeded 'shared' image is private there)."""
        visibility = str(image.get("visibility") or "private")
        if self.modern:
            return visibility
        return "public" if visibility == "public" else "private"

    def open_to_all(self, image: Record) -> bool:
        visibility = image.get("visibility")
        return visibility == "public" or (self.modern and visibility == "community")

    def may_have_members(self, image: Record) -> bool:
        if self.modern:
            return image.get("visibility") == "shared"
        return image.get("visibility") != "public"


def member_key(image_id: str, member_id: str) -> str:
    return f"{image_id}:{member_id}"


def membership(cloud: SimCloud, image_id: str, project_id: str | None) -> Record | None:
    if not project_id:
        return None
    return cloud.state.get("image_members", member_key(image_id, project_id))


def can_see(cloud: SimCloud, rules: GlanceRules, ctx: AuthContext, image: Record) -> bool:
    if ctx.is_admin or image.get("owner") is None or rules.open_to_all(image):
        return True
    if ctx.project_id is not None and image.get("owner") == ctx.project_id:
        return True
    return rules.may_have_members(image) and membership(
        cloud, image["id"], ctx.project_id) is not None


def can_modify(ctx: AuthContext, image: Record) -> bool:
    """Glance's ``is_image_mutable``: admins and the owning project."""
    if ctx.is_admin:
        return True
    return image.get("owner") is not None and image.get("owner") == ctx.project_id


def visible_image(cloud: SimCloud, rules: GlanceRules, ctx: AuthContext, image_id: str
                  ) -> Record:
    """The image, or 404 exactly as for an image that does not exist (no information leak)."""
    image = cloud.state.get("images", image_id)
    if image is None or not can_see(cloud, rules, ctx, image):
        raise SimHTTPError(404, f"No image found with ID {image_id}")
    return image


def listed_by_default(cloud: SimCloud, rules: GlanceRules, ctx: AuthContext, image: Record,
                      member_status: str) -> bool:
    """Whether a listing (before filters) includes the image: a regular user's union of
    open images, own images and memberships in ``member_status``; an admin's everything."""
    if ctx.is_admin:
        return True
    if rules.open_to_all(image) or image.get("owner") is None:
        return True
    if ctx.project_id is not None and image.get("owner") == ctx.project_id:
        return True
    return member_listed(cloud, rules, ctx, image, member_status)


def member_listed(cloud: SimCloud, rules: GlanceRules, ctx: AuthContext, image: Record,
                  member_status: str) -> bool:
    if rules.modern and image.get("visibility") != "shared":
        return False
    member = membership(cloud, image["id"], ctx.project_id)
    return member is not None and member_status in ("all", member.get("status"))


def members_of(cloud: SimCloud, image_id: str) -> list[Record]:
    """The member records of an image (keyed ``"<image_id>:<member_id>"``), from the
    state's index of members by image (a member's id never changes)."""
    return cloud.state.keyed("image_members", "image-of-id", image_of_member, image_id,
                             stable=True)


def image_of_member(member: Record) -> tuple[str]:
    """The image a member record belongs to (the first part of its id), as an index key."""
    return (str(member["id"]).partition(":")[0],)


def has_members(cloud: SimCloud, image_id: str) -> bool:
    return bool(members_of(cloud, image_id))


async def read_any_json(request: web.Request) -> Any:
    """The JSON body whatever its Content-Type (Glance's PATCH uses its own media type)."""
    if not request.can_read_body:
        return None
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SimHTTPError(400, f"Malformed JSON in request body: {exc}") from exc
