"""Target Keystone v3: projects (tagged with their source id), users (extra attribute),
roles and role assignments (idempotent PUTs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrator.clouds.target_base import (
    USER_SOURCE_ATTRIBUTE,
    TargetBase,
    TargetCloudError,
    TargetNotFoundError,
    source_tag,
)
from migrator.errors import CloudError, NotFoundError


class IdentityMixin(TargetBase):
    # -- projects ------------------------------------------------------------------------
    def find_project_by_source(self, source_id: str) -> dict[str, Any] | None:
        body = self.request(
            "identity", "GET", "/projects", op="find project", what=f"of source {source_id}",
            params={"tags": source_tag(source_id)},
        )
        return _single(body["projects"], "project", source_id, self.name)

    def find_project_by_name(self, name: str, domain_id: str) -> dict[str, Any] | None:
        body = self.request(
            "identity", "GET", "/projects", op="find project", what=repr(name),
            params={"name": name, "domain_id": domain_id},
        )
        return body["projects"][0] if body["projects"] else None

    def get_project(self, project_id: str) -> dict[str, Any]:
        return self._get_identity("projects", "project", project_id)

    def create_project(self, source_id: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """A v3 project from ``attrs`` (name, domain_id, description, enabled...), tagged
        ``migrator-src-<source id>``."""
        body = dict(attrs)
        body["tags"] = sorted({*body.get("tags", []), source_tag(source_id)})
        out = self.request(
            "identity", "POST", "/projects", op="create project", what=repr(body.get("name")),
            json={"project": body},
        )
        return dict(out["project"])

    def tag_project(self, project_id: str, source_id: str) -> None:
        """Mark an existing project (adopted by decision) with the source id."""
        self.request(
            "identity", "PUT", f"/projects/{project_id}/tags/{source_tag(source_id)}",
            op="tag project", what=project_id,
        )

    def delete_project(self, project_id: str) -> None:
        self.request(
            "identity", "DELETE", f"/projects/{project_id}", op="delete project",
            what=project_id, missing_ok=True,
        )

    # -- users ---------------------------------------------------------------------------
    def find_user_by_source(
        self, source_id: str, *, name: str | None = None, domain_id: str | None = None
    ) -> dict[str, Any] | None:
        """The user carrying ``migrator_source_id == source_id``. Keystone cannot filter on an
        extra attribute, so the list is narrowed by name (and domain) when they are known."""
        params = {k: v for k, v in (("name", name), ("domain_id", domain_id)) if v}
        users = self.request(
            "identity", "GET", "/users", op="find user", what=f"of source {source_id}",
            params=params,
        )["users"]
        found = [u for u in users if u.get(USER_SOURCE_ATTRIBUTE) == source_id]
        return _single(found, "user", source_id, self.name)

    def users_named(self, name: str, domain_id: str) -> list[dict[str, Any]]:
        """Every user called ``name`` in ``domain_id`` (one list call)."""
        return list(self.request(
            "identity", "GET", "/users", op="find user", what=repr(name),
            params={"name": name, "domain_id": domain_id},
        )["users"])

    def user_of_source(self, users: list[dict[str, Any]], source_id: str
                       ) -> dict[str, Any] | None:
        """The one user of ``users`` carrying ``source_id`` (duplicates are an error)."""
        return _single([u for u in users if u.get(USER_SOURCE_ATTRIBUTE) == source_id],
                       "user", source_id, self.name)

    def get_user(self, user_id: str) -> dict[str, Any]:
        return self._get_identity("users", "user", user_id)

    def create_user(
        self, source_id: str, attrs: Mapping[str, Any], *, password: str | None = None
    ) -> dict[str, Any]:
        """A user from ``attrs`` with the extra attribute ``migrator_source_id`` and, unless
        given, a description naming the source. ``password`` is sent, never logged."""
        body = {k: v for k, v in attrs.items() if k != "password"}
        body[USER_SOURCE_ATTRIBUTE] = source_id
        if not body.get("description"):
            body["description"] = self.source_description(source_id)
        if password is not None:
            body["password"] = password
        out = self.request(
            "identity", "POST", "/users", op="create user", what=repr(body.get("name")),
            json={"user": body}, secret=password is not None,
        )
        return dict(out["user"])

    def mark_user(self, user_id: str, source_id: str) -> dict[str, Any]:
        """Record the source id on an existing (adopted) user."""
        out = self.request(
            "identity", "PATCH", f"/users/{user_id}", op="mark user", what=user_id,
            json={"user": {USER_SOURCE_ATTRIBUTE: source_id}},
        )
        return dict(out["user"])

    def delete_user(self, user_id: str) -> None:
        self.request(
            "identity", "DELETE", f"/users/{user_id}", op="delete user", what=user_id,
            missing_ok=True,
        )

    # -- roles and assignments -----------------------------------------------------------
    def find_role_by_name(self, name: str) -> dict[str, Any] | None:
        roles = self.request(
            "identity", "GET", "/roles", op="find role", what=repr(name), params={"name": name}
        )["roles"]
        return roles[0] if roles else None

    def role_id(self, name: str) -> str:
        """A role's id by name (memoised: roles do not change during a run)."""

        def lookup() -> str:
            role = self.find_role_by_name(name)
            if role is None:
                raise NotFoundError(f"{self.name}: role {name!r} does not exist")
            return str(role["id"])

        return str(self.cached(f"role:{name}", lookup))

    def grant_project_role(self, project_id: str, user_id: str, role_id: str) -> None:
        """Idempotent PUT: granting twice is not an error."""
        self.request(
            "identity", "PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}",
            op="grant role", what=f"{role_id} to user {user_id} on project {project_id}",
        )

    def has_project_role(self, project_id: str, user_id: str, role_id: str) -> bool:
        try:
            self.request(
                "identity", "HEAD", f"/projects/{project_id}/users/{user_id}/roles/{role_id}",
                op="check role", what=f"{role_id} of user {user_id} on project {project_id}",
            )
        except TargetNotFoundError:
            return False
        return True

    def revoke_project_role(self, project_id: str, user_id: str, role_id: str) -> None:
        self.request(
            "identity", "DELETE", f"/projects/{project_id}/users/{user_id}/roles/{role_id}",
            op="revoke role", what=f"{role_id} of user {user_id} on project {project_id}",
            missing_ok=True,
        )

    # -- helpers -------------------------------------------------------------------------
    def _get_identity(self, collection: str, member: str, rid: str) -> dict[str, Any]:
        out = self.request(
            "identity", "GET", f"/{collection}/{rid}", op=f"get {member}", what=rid,
            missing_ok=True,
        )
        if out is None:
            raise self.not_found(member, rid, self.name)
        return dict(out[member])


def _single(
    items: list[dict[str, Any]], kind: str, source_id: str, cloud: str
) -> dict[str, Any] | None:
    if not items:
        return None
    if len(items) > 1:
        ids = ", ".join(sorted(str(i.get("id")) for i in items))
        raise CloudError(
            f"{cloud}: {len(items)} {kind}s carry source id {source_id} ({ids}); "
            "remove the duplicates by hand"
        )
    return dict(items[0])


__all__ = ["IdentityMixin", "TargetCloudError"]
