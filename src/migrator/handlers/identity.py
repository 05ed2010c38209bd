"""Handlers for Keystone kinds: project, quota, user, role_assignment.

Specs (see handlers/base.py for the common shape):

- project: attrs {name, domain_id, description, enabled}; lookup {adopt_id?} (a clash the
  config resolved with ``adopt``: that project is tagged and used).
- quota: source id ``<service>:<project source id>``; attrs {<quota key>: value} with the
  policy already applied; refs {project_id: "project:<id>"}; lookup {service?}. Keys the
  target refuses (microversion) or does not know are left out and listed in the checkpoint.
- user: attrs {name, domain_id, email, enabled, description}; refs {default_project_id?};
  lookup {password_policy: random|fixed|external, password_file (random), password_env
  (fixed), adopt_id?}. A random password is appended to the password file (mode 0600,
  handlers/passwords.py) before the user is created, and reused if the create is retried or
  resumed; it never reaches a log, the state database or the plan.
- role_assignment: source id ``<user>:<project>:<role>``; refs {user_id, project_id};
  lookup {role_id} (resolved at plan time) or {role_name} (resolved at run time).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from migrator.clouds.target import TargetCloud
from migrator.engine.handlers import Reconciliation, StepContext
from migrator.engine.steps import StepSnapshot
from migrator.errors import ConfigError, StepFailedError, TargetGoneError
from migrator.handlers import idmap
from migrator.handlers.base import (
    ResourceHandler,
    resolve_attrs,
    source_id_of,
    spec_part,
    target_cloud,
)
from migrator.handlers.passwords import random_password

# -- project ---------------------------------------------------------------------------------


class ProjectHandler(ResourceHandler):
    kind = "project"
    verify_fields = ("name", "domain_id", "description", "enabled")

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        return tc.find_project_by_source(source_id)

    def adopt_by_decision(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
                          attrs: dict[str, Any]) -> dict[str, Any] | None:
        adopt_id = spec_part(step, "lookup").get("adopt_id")
        if not adopt_id:
            return None
        tc.tag_project(str(adopt_id), source_id)
        return tc.get_project(str(adopt_id))

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.create_project(source_id, attrs)

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.get_project(target_id)


# -- quota -----------------------------------------------------------------------------------


class QuotaHandler(ResourceHandler):
    """Idempotent PUT of one service's quota set; nothing to find or mark."""

    kind = "quota"
    phases = ("apply",)
    marked = False

    @staticmethod
    def _split(step: StepSnapshot, attrs: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        values = dict(attrs)
        project_id = values.pop("project_id", None)
        if not project_id:
            raise StepFailedError(f"step {step.key!r}: no project_id (spec.refs.project_id)")
        service = spec_part(step, "lookup").get("service") or source_id_of(step).partition(
            ":")[0]
        return str(service), str(project_id), values

    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:
        tc = target_cloud(ctx)
        with tc.counting() as counted:
            service, project_id, values = self._split(step, resolve_attrs(ctx, step))
            result = tc.set_quotas(service, project_id, values)
        if result.answer is not None:
            ctx.answers["quotas"] = result.answer
        target_id = f"{service}:{project_id}"
        # Unmarked on the target: recorded at once (see idmap.record_step_target).
        idmap.record_step_target(ctx.factory, ctx.step, source_id_of(step), target_id)
        data: dict[str, Any] = {"target_id": target_id, "applied": result.applied,
                                "apply_calls": counted["calls"]}
        if result.dropped:
            data["dropped"] = result.dropped
            ctx.log.info("step %s: quota keys left out: %s", step.key,
                         ", ".join(f"{k} ({why})" for k, why in sorted(result.dropped.items())))
        if counted["retries"]:
            data["apply_retries"] = counted["retries"]
        return data

    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        tc = target_cloud(ctx)
        service, project_id, _ = self._split(step, resolve_attrs(ctx, step))
        # The PUT's answer is the quota set as the target stored it: no second read.
        have = ctx.answers.get("quotas") or tc.get_quotas(service, project_id)
        applied = step.checkpoint.get("applied") or {}
        wrong = [f"{k}: wanted {v!r}, target has {have.get(k)!r}" for k, v in applied.items()
                 if have.get(k) != v]
        if wrong:
            raise StepFailedError(f"step {step.key!r}: {service} quotas of project "
                                  f"{project_id} differ: " + "; ".join(wrong))

    def reconcile(self, ctx: StepContext, step: StepSnapshot) -> Reconciliation:
        return Reconciliation.RESTART  # a PUT again is harmless


# -- user ------------------------------------------------------------------------------------


def password_key(attrs: Mapping[str, Any]) -> str:
    domain = attrs.get("domain_id") or "default"
    name = str(attrs.get("name"))
    return name if domain == "default" else f"{name}@{domain}"


def user_password(step: StepSnapshot, attrs: Mapping[str, Any]) -> str | None:
    lookup = spec_part(step, "lookup")
    policy = lookup.get("password_policy", "random")
    if policy == "external":
        return None
    if policy == "fixed":
        var = lookup.get("password_env")
        if not var:
            raise ConfigError(f"step {step.key!r}: password policy 'fixed' needs password_env")
        value = os.environ.get(str(var))
        if not value:
            raise ConfigError(f"step {step.key!r}: environment variable {var} (password_env) "
                              "is not set")
        return value
    if policy == "random":
        path = lookup.get("password_file")
        if not path:
            raise ConfigError(f"step {step.key!r}: password policy 'random' needs "
                              "password_file")
        return random_password(Path(str(path)), password_key(attrs))
    raise ConfigError(f"step {step.key!r}: unknown password_policy {policy!r} "
                      "(random, fixed, external)")


class UserHandler(ResourceHandler):
    kind = "user"
    verify_fields = ("name", "domain_id", "email", "enabled", "default_project_id",
                     "description")

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        if not attrs.get("name"):
            return tc.find_user_by_source(source_id, domain_id=attrs.get("domain_id"))
        # One list serves both questions: is our user there, and is the name taken by another.
        users = tc.users_named(str(attrs["name"]), str(attrs.get("domain_id") or "default"))
        found = tc.user_of_source(users, source_id)
        if found is None and not spec_part(step, "lookup").get("adopt_id"):
            clash = users[0] if users else None
            if clash is not None:
                raise StepFailedError(
                    f"step {step.key!r}: user {attrs['name']!r} already exists on "
                    f"{tc.name} ({clash['id']}) and was not created by migrator"
                )
        return found

    def adopt_by_decision(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
                          attrs: dict[str, Any]) -> dict[str, Any] | None:
        adopt_id = spec_part(step, "lookup").get("adopt_id")
        return tc.mark_user(str(adopt_id), source_id) if adopt_id else None

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.create_user(source_id, attrs, password=user_password(step, attrs))

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.get_user(target_id)


# -- role assignment -------------------------------------------------------------------------


class RoleAssignmentHandler(ResourceHandler):
    """Idempotent grant (PUT); the target id is ``<user>:<project>:<role>`` on the target."""

    kind = "role_assignment"
    phases = ("grant",)
    marked = False

    @staticmethod
    def _parts(tc: TargetCloud, step: StepSnapshot, attrs: Mapping[str, Any]
               ) -> tuple[str, str, str]:
        lookup = spec_part(step, "lookup")
        user_id, project_id = attrs.get("user_id"), attrs.get("project_id")
        if not user_id or not project_id:
            raise StepFailedError(f"step {step.key!r}: needs user_id and project_id "
                                  "(spec.refs)")
        role_id = attrs.get("role_id") or lookup.get("role_id")
        if not role_id:
            name = lookup.get("role_name")
            if not name:
                raise StepFailedError(f"step {step.key!r}: no target role (lookup.role_id "
                                      "or lookup.role_name)")
            role_id = tc.role_id(str(name))
        return str(user_id), str(project_id), str(role_id)

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        user_id, project_id, role_id = self._parts(tc, step, attrs)
        if tc.has_project_role(project_id, user_id, role_id):
            return self._assignment(user_id, project_id, role_id)
        return None

    @staticmethod
    def _assignment(user_id: str, project_id: str, role_id: str) -> dict[str, Any]:
        return {"id": f"{user_id}:{project_id}:{role_id}", "user_id": user_id,
                "project_id": project_id, "role_id": role_id}

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        user_id, project_id, role_id = self._parts(tc, step, attrs)
        # Keystone's 204 to the grant is the assignment's existence: verified from it.
        tc.grant_project_role(project_id, user_id, role_id)
        return self._assignment(user_id, project_id, role_id)

    def _create_or_adopt(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot,
                         attrs: dict[str, Any]) -> Mapping[str, Any]:
        # The grant is an idempotent PUT: no need to look first.
        created = self.create(ctx, tc, step, source_id_of(step), attrs)
        ctx.answers["resource"] = created
        # Unmarked on the target: recorded at once (see idmap.record_step_target).
        idmap.record_step_target(ctx.factory, ctx.step, source_id_of(step), created["id"])
        return {"target_id": created["id"]}

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        user_id, project_id, role_id = target_id.split(":")
        if not tc.has_project_role(project_id, user_id, role_id):
            raise TargetGoneError(f"step {step.key!r}: role {role_id} of user {user_id} on "
                                  f"project {project_id} is missing on {tc.name}")
        return self._assignment(user_id, project_id, role_id)

    def reconcile(self, ctx: StepContext, step: StepSnapshot) -> Reconciliation:
        return Reconciliation.RESTART  # granting again is harmless
