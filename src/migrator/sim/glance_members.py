"""Glance v2 image members: ``/v2/images/{id}/members[/{member_id}]``.

From glance/api/v2/image_members.py and glance/api/authorization.py (liberty and master):
only the owner (or an admin) adds and removes members; only the member (or an admin) sets
its own status; the owner sees every member, a member only itself, anyone else gets 403 on
the list and 404 on one member. Liberty refuses members on public images; modern Glance
accepts them only on ``shared`` images. A new member is ``pending``; creation answers 200.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.glance_access import (
    MEMBER_STATUSES,
    PREFIX,
    GlanceRules,
    member_key,
    members_of,
    read_any_json,
    visible_image,
)
from migrator.sim.http import AuthContext, SimHTTPError, auth_of, json_response
from migrator.sim.state import Record, now_iso


class GlanceMembers:
    def __init__(self, cloud: SimCloud, rules: GlanceRules) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.rules = rules

    @staticmethod
    def render(member: Record) -> dict[str, Any]:
        return {"member_id": member["member_id"], "image_id": member["image_id"],
                "status": member["status"], "created_at": member["created_at"],
                "updated_at": member["updated_at"], "schema": "/v2/schemas/member"}

    def _image_with_members(self, request: web.Request) -> tuple[AuthContext, Record]:
        ctx = auth_of(request)
        image = visible_image(self.cloud, self.rules, ctx, request.match_info["image_id"])
        if not self.rules.may_have_members(image):
            reason = ("Only shared images have members." if self.rules.modern
                      else "Public images do not have members.")
            raise SimHTTPError(403, f"Error fetching members of image {image['id']}: {reason}")
        return ctx, image

    def _members_of(self, image_id: str) -> list[Record]:
        return list(members_of(self.cloud, image_id))

    def _member(self, image: Record, member_id: str) -> Record:
        member = self.state.get("image_members", member_key(image["id"], member_id))
        if member is None:
            raise SimHTTPError(404, f"{member_id} not found in the member list of the image "
                                    f"{image['id']}.")
        return member

    @staticmethod
    def _is_owner(ctx: AuthContext, image: Record) -> bool:
        return ctx.is_admin or (image.get("owner") is not None
                                and image.get("owner") == ctx.project_id)

    async def list_members(self, request: web.Request) -> web.Response:
        ctx, image = self._image_with_members(request)
        members = self._members_of(image["id"])
        if not self._is_owner(ctx, image):
            members = [m for m in members if m["member_id"] == ctx.project_id]
            if not members:
                raise SimHTTPError(403, f"You cannot get image member for {image['id']}")
        members.sort(key=lambda m: (m["created_at"], m["member_id"]))
        return json_response({"members": [self.render(m) for m in members],
                              "schema": "/v2/schemas/members"})

    async def create_member(self, request: web.Request) -> web.Response:
        ctx, image = self._image_with_members(request)
        body = await read_any_json(request)
        if not isinstance(body, dict) or "member" not in body:
            raise SimHTTPError(400, "Member to be added not specified")
        member_id = body["member"]
        if not member_id or not isinstance(member_id, str):
            raise SimHTTPError(400, "Member can't be empty")
        if not self._is_owner(ctx, image):
            raise SimHTTPError(403, f"Not allowed to create members for image {image['id']}.")
        key = member_key(image["id"], member_id)
        if self.state.get("image_members", key) is not None:
            raise SimHTTPError(409, f"Member {member_id} is duplicated for image "
                                    f"{image['id']}")
        stamp = now_iso()
        member = self.state.put("image_members", {
            "id": key, "image_id": image["id"], "member_id": member_id, "status": "pending",
            "created_at": stamp, "updated_at": stamp})
        return json_response(self.render(member))

    async def show_member(self, request: web.Request) -> web.Response:
        ctx, image = self._image_with_members(request)
        member_id = request.match_info["member_id"]
        # Glance turns "not yours to see" into 404 so as not to leak memberships.
        if not self._is_owner(ctx, image) and member_id != ctx.project_id:
            raise SimHTTPError(404, f"{member_id} not found in the member list of the image "
                                    f"{image['id']}.")
        return json_response(self.render(self._member(image, member_id)))

    async def update_member(self, request: web.Request) -> web.Response:
        ctx, image = self._image_with_members(request)
        member_id = request.match_info["member_id"]
        body = await read_any_json(request)
        if not isinstance(body, dict) or "status" not in body:
            raise SimHTTPError(400, "Status not specified")
        status = body["status"]
        if not ctx.is_admin and ctx.project_id != member_id:
            if ctx.project_id == image.get("owner"):
                raise SimHTTPError(403, f"Not allowed to update members for image "
                                        f"{image['id']}.")
            raise SimHTTPError(404, f"{member_id} not found in the member list of the image "
                                    f"{image['id']}.")
        member = self._member(image, member_id)
        if status not in MEMBER_STATUSES:
            raise SimHTTPError(400, f"Incorrect request: Invalid status: {status}")
        member["status"] = status
        member["updated_at"] = now_iso()
        self.state.touch("image_members", member)
        return json_response(self.render(member))

    async def delete_member(self, request: web.Request) -> web.Response:
        ctx, image = self._image_with_members(request)
        member_id = request.match_info["member_id"]
        if not self._is_owner(ctx, image):
            if member_id != ctx.project_id:
                raise SimHTTPError(404, f"{member_id} not found in the member list of the "
                                        f"image {image['id']}.")
            raise SimHTTPError(403, f"Not allowed to delete members for image {image['id']}.")
        member = self._member(image, member_id)
        self.state.delete("image_members", member["id"])
        return web.Response(status=204)


def add_routes(router: web.UrlDispatcher, cloud: SimCloud, rules: GlanceRules) -> None:
    api = GlanceMembers(cloud, rules)
    base = f"{PREFIX}/v2/images/{{image_id}}/members"
    router.add_get(base, api.list_members, allow_head=False)
    router.add_post(base, api.create_member)
    router.add_get(f"{base}/{{member_id}}", api.show_member, allow_head=False)
    router.add_put(f"{base}/{{member_id}}", api.update_member)
    router.add_delete(f"{base}/{{member_id}}", api.delete_member)
