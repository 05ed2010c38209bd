"""Undo handlers: the steps of a rollback run, one per target resource a run created.

A rollback run (operations/rollback.py) has one step ``undo:<original step key>`` of kind
``undo_<kind>`` per resource to remove. Its spec names the run undone, the original step, the
target id and the action decided when the rollback was planned (``delete``, ``revoke``,
``remove_interface``, ``remove_member``, ``reset_quotas``). Phases:

- ``undo``: read the resource on the target; gone already: nothing to do; still carrying the
  source id the run marked it with (tag, user attribute, rule description, volume metadata,
  keypair fingerprint): removed; carrying another mark or none: left alone and said so (a
  resource someone re-purposed since is not ours any more). Then the original step goes
  ``done -> rolled_back`` (an event in the undone run's audit trail naming the rollback).
- ``restore_source``: what the run changed on the source is put back, through the restorer
  registered for the original kind (:func:`register_source_restorer`): a volume's temporary
  legacy image (``os-volume_upload_image``), which a copy that did not finish leaves, is
  deleted; a server that was ACTIVE before its cutover is started again, and the cutover's
  snapshot and temporary images are deleted (handlers/undo_servers.py). Nothing else of the
  source is written.

A volume step that made no target volume yet gets the action ``temporaries``: its temporary
images (target and source) are removed, nothing else. A server step's undo removes the target
server and what its cutover made for it (ports, boot image, volumes: handlers/undo_servers.py),
also when no server was booted yet (target id ``-``).

Every phase is idempotent (a 404 is "already gone"), so a rollback killed halfway and run
again restarts its in-doubt steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from migrator.clouds.target import TargetCloud, fingerprint, migrated_source_id
from migrator.engine.handlers import Handler, HandlerRegistry, Reconciliation, StepContext
from migrator.engine.steps import StepSnapshot, fire
from migrator.errors import IllegalTransitionError, NotFoundError, StepFailedError
from migrator.handlers.base import target_cloud
from migrator.handlers.undo_servers import read_server, restore_server_source, undo_server
from migrator.spec import UndoSpec
from migrator.transfer.volume_api import Api
from migrator.transfer.volume_copy import SOURCE_KEY, TEMP_TAG

# Kinds a rollback knows how to undo (the kinds migrated today).
UNDO_KINDS = (
    "project", "quota", "user", "role_assignment", "network", "subnet", "router",
    "router_interface", "security_group", "security_group_rule", "keypair", "image",
    "image_member", "volume", "server",
)
UNDO_PREFIX = "undo_"

# A restorer puts back what a migration changed on the source for one step:
# ``restorer(source_handle, undo_spec) -> detail`` (what it did, for the audit); the spec
# holds the source id and the undone step's checkpoint (``original_checkpoint``).
SourceRestorer = Callable[[Any, UndoSpec], Mapping[str, Any]]
_RESTORERS: dict[str, SourceRestorer] = {}


def register_source_restorer(kind: str, restorer: SourceRestorer) -> None:
    """How a rollback puts back the source state a step of ``kind`` changed (a stopped
    server started again). Kinds without one change nothing on the source."""
    _RESTORERS[kind] = restorer


def source_restorer(kind: str) -> SourceRestorer | None:
    return _RESTORERS.get(kind)


def undo_spec(step: StepSnapshot) -> UndoSpec:
    """What the undo step removes (its spec's ``undo`` part)."""
    spec = step.spec.get("undo")
    if not isinstance(spec, dict):
        raise StepFailedError(f"step {step.key!r}: spec.undo must be a mapping")
    return spec


class GoneError(Exception):
    """The resource is not on the target (any more)."""


class UndoHandler(Handler):
    phases = ("undo", "restore_source")

    def __init__(self, kind: str) -> None:
        self.kind = UNDO_PREFIX + kind
        self.original_kind = kind

    # -- phases --------------------------------------------------------------------------
    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:
        spec = undo_spec(step)
        if phase == "restore_source":
            restorer = source_restorer(self.original_kind)
            if restorer is None or not spec.get("restore_source"):
                return {}
            source = ctx.services.source
            if source is None:
                raise StepFailedError(f"step {step.key!r}: restoring the source needs the "
                                      "source cloud, which the rollback was not given")
            return {"restored": dict(restorer(source, spec))}
        data = dict(self._undo(target_cloud(ctx), step))
        self._mark_original(ctx, step, data)
        return data

    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        spec = undo_spec(step)
        if step.checkpoint.get("outcome") != "removed" or spec.get("action") != "delete":
            return
        tc = target_cloud(ctx)
        try:
            resource = self._read(tc, step)
        except GoneError:
            return
        if spec.get("action") == "delete":
            raise StepFailedError(f"step {step.key!r}: {self.original_kind} "
                                  f"{spec.get('target_id')} is still on the target "
                                  f"({resource.get('status', 'present')})")

    def reconcile(self, ctx: StepContext, step: StepSnapshot) -> Reconciliation:
        # Every phase tolerates what an earlier try did: simply run it again.
        return Reconciliation.RESTART

    # -- the undo itself -------------------------------------------------------------------
    def _undo(self, tc: TargetCloud, step: StepSnapshot) -> Mapping[str, Any]:
        spec = undo_spec(step)
        action = str(spec.get("action"))
        target_id = str(spec.get("target_id"))
        out: dict[str, Any] = {"action": action, "kind": self.original_kind,
                               "target_id": target_id, "undone_run": spec.get("run"),
                               "undone_step": spec.get("step_key")}
        if action == "reset_quotas":
            service, _, project_id = target_id.partition(":")
            reset_quotas(tc, service, project_id)
            out["outcome"] = "reset"
            return out
        if self.original_kind == "server":
            out.update(undo_server(tc, spec))
            return out
        if action == "temporaries":
            removed = self._remove_temporaries(tc, step)
            out["temporary_images_removed"] = removed
            out["outcome"] = "removed" if removed else "already gone"
            return out
        try:
            resource = self._read(tc, step)
        except GoneError:
            out["outcome"] = "already gone"
            return out
        problem = self._mark_problem(step, resource)
        if problem:
            out["outcome"] = "left"
            out["reason"] = problem
            return out
        if self.original_kind == "project":
            out["default_groups_removed"] = self._remove_default_groups(tc, target_id)
        if self.original_kind == "volume":
            out["temporary_images_removed"] = self._remove_temporaries(tc, step)
        self._remove(tc, step, resource)
        out["outcome"] = "removed"
        return out

    def _read(self, tc: TargetCloud, step: StepSnapshot) -> dict[str, Any]:
        kind, target_id = self.original_kind, str(undo_spec(step).get("target_id"))
        try:
            if kind in ("project", "user"):
                return dict(getattr(tc, f"get_{kind}")(target_id))
            if kind in ("network", "subnet", "router", "security_group",
                        "security_group_rule"):
                return dict(getattr(tc, f"get_{kind}")(target_id))
            if kind == "router_interface":
                return tc.get_port(target_id)
            if kind == "keypair":
                user_id, _, name = target_id.partition(":")
                return tc.get_keypair(user_id, name)
            if kind == "role_assignment":
                user_id, project_id, role_id = target_id.split(":")
                if not tc.has_project_role(project_id, user_id, role_id):
                    raise GoneError(target_id)
                return {"id": target_id}
            api = Api(tc.handle)
            if kind == "server":
                if target_id == "-":
                    raise GoneError(target_id)
                record = read_server(api, target_id)
            elif kind == "image":
                record = api.image(target_id)
            elif kind == "volume":
                record = api.volume(target_id)
                if record is not None and record.get("status") == "deleting":
                    raise GoneError(target_id)
            elif kind == "image_member":
                image_id, _, member_id = target_id.partition(":")
                found = api.request("image", "GET", f"images/{image_id}/members/{member_id}",
                                    f"reading member {member_id} of image {image_id}",
                                    missing_ok=True)
                record = found if isinstance(found, dict) else None
            else:
                raise StepFailedError(f"step {step.key!r}: no undo for kind {kind!r}")
        except NotFoundError as exc:
            raise GoneError(target_id) from exc
        if record is None:
            raise GoneError(target_id)
        return dict(record)

    def _mark_problem(self, step: StepSnapshot, resource: Mapping[str, Any]) -> str | None:
        """Why the resource is not the one the run made (None: it is)."""
        kind, source_id = self.original_kind, str(undo_spec(step).get("source_id"))
        if kind in ("project", "user", "network", "subnet", "router", "security_group",
                    "security_group_rule", "image"):
            mark = migrated_source_id(resource)
            if mark != source_id:
                return (f"it carries source id mark {mark!r}, not {source_id!r}" if mark
                        else "it carries no source id mark")
        elif kind == "volume":
            mark = (resource.get("metadata") or {}).get(SOURCE_KEY)
            if mark != source_id:
                return f"its metadata {SOURCE_KEY} is {mark!r}, not {source_id!r}"
        elif kind == "keypair":
            want = undo_spec(step).get("fingerprint")
            have = fingerprint(str(resource.get("public_key", "")))
            if want and want != have:
                return f"its fingerprint is {have}, the run imported {want}"
        elif kind == "router_interface" and resource.get("device_owner") != \
                "network:router_interface":
            return (f"port {resource.get('id')} is not a router interface any more "
                    f"({resource.get('device_owner')!r})")
        return None

    def _remove(self, tc: TargetCloud, step: StepSnapshot, resource: Mapping[str, Any]
                ) -> None:
        kind, target_id = self.original_kind, str(undo_spec(step).get("target_id"))
        if kind == "keypair":
            user_id, _, name = target_id.partition(":")
            tc.delete_keypair(user_id, name)
        elif kind == "role_assignment":
            user_id, project_id, role_id = target_id.split(":")
            tc.revoke_project_role(project_id, user_id, role_id)
        elif kind == "router_interface":
            subnet = next((ip.get("subnet_id") for ip in resource.get("fixed_ips") or []), None)
            if subnet:
                tc.remove_router_interface(str(resource.get("device_id")), str(subnet))
        elif kind == "image":
            Api(tc.handle).delete_image(target_id)
        elif kind == "image_member":
            image_id, _, member_id = target_id.partition(":")
            Api(tc.handle).request("image", "DELETE", f"images/{image_id}/members/{member_id}",
                                   f"removing member {member_id} of image {image_id}",
                                   missing_ok=True)
        elif kind == "volume":
            api = Api(tc.handle)
            # A volume still being made (the run was killed while Cinder created it) cannot
            # be deleted yet: wait (bounded) until it settles.
            tc.wait_until(f"volume {target_id} to settle before its deletion",
                          lambda: _volume_settled(api, target_id), interval=0.2)
            api.delete_volume(target_id)
            # Cinder deletes in the background: wait (bounded) so that the project it lives
            # in can go next and "the target as before" holds when the rollback ends.
            tc.wait_until(f"volume {target_id} to be deleted",
                          lambda: _volume_gone(api, target_id), interval=0.2)
        else:
            getattr(tc, f"delete_{kind}")(target_id)

    def _remove_default_groups(self, tc: TargetCloud, project_id: str) -> list[str]:
        """The project's ``default`` security group, made by Neutron itself when the run
        first touched the project's network resources: it goes with the project (a group
        the run adopted and marked was removed by its own undo step already)."""
        groups = tc.request("network", "GET", "/security-groups", op="list security groups",
                            what=f"of project {project_id}",
                            params={"project_id": project_id, "name": "default"})
        removed = []
        for group in groups.get("security_groups") or []:
            if group.get("project_id") == project_id:
                tc.delete_security_group(str(group["id"]))
                removed.append(str(group["id"]))
        return removed

    def _remove_temporaries(self, tc: TargetCloud, step: StepSnapshot) -> list[str]:
        """The volume copy's temporary target images (tagged temporary and with the source
        volume's id) that a half-finished copy left."""
        api = Api(tc.handle)
        tag = f"migrator-src-{undo_spec(step).get('source_id')}"
        found = api.pages("image", "images", "images", f"listing images tagged {tag}",
                          {"tag": tag, "visibility": "all"})
        removed = []
        for image in found:
            if TEMP_TAG in (image.get("tags") or []):
                api.delete_image(str(image["id"]))
                removed.append(str(image["id"]))
        return removed

    def _mark_original(self, ctx: StepContext, step: StepSnapshot,
                       data: Mapping[str, Any]) -> None:
        """The undone step goes done -> rolled_back (its run's audit names the rollback);
        a step that never finished keeps its state (the rollback run's event records it)."""
        original = undo_spec(step).get("step_id")
        if not isinstance(original, int) or data.get("outcome") == "left":
            return
        with suppress(IllegalTransitionError):
            fire(ctx.factory, original, "rollback",
                 detail={"rollback_run": ctx.run_name, "target_id": data.get("target_id"),
                         "outcome": data.get("outcome")})


# The quota set of a service back to the target's defaults (each service's DELETE).
_QUOTA_RESETS = {"compute": ("compute", "/os-quota-sets/{}"),
                 "volume": ("block_storage", "/os-quota-sets/{}"),
                 "network": ("network", "/quotas/{}")}


def reset_quotas(tc: TargetCloud, service: str, project_id: str) -> None:
    """What the run set goes back to the defaults: a project the rollback removes must not
    leave its quota rows behind in Nova, Cinder and Neutron (Keystone does not tell them)."""
    where = _QUOTA_RESETS.get(service)
    if where is None:
        raise StepFailedError(f"no quota service {service!r} to reset")
    api, path = where
    tc.request(api, "DELETE", path.format(project_id), op=f"reset {service} quotas",
               what=f"of project {project_id}", ok=(200, 202, 204), missing_ok=True)


def delete_volume_temporaries(source: Any, spec: UndoSpec) -> Mapping[str, Any]:
    """The temporary legacy images of a volume copy (named after the source volume): made
    by the migration on the source, removed with its rollback."""
    from migrator.transfer.volume_copy import temp_image_name

    source_id = str(spec.get("source_id"))
    checkpoint = spec.get("original_checkpoint") or {}
    api = Api(source)
    known = str((checkpoint.get("copy") or {}).get("source_temp_image_id") or "")
    found = {str(i["id"]) for i in api.images_named(temp_image_name(source_id))}
    if known and api.image(known) is not None:
        found.add(known)
    for image_id in sorted(found):
        api.delete_image(image_id)
    return {"source_temporary_images_removed": sorted(found)}


register_source_restorer("volume", delete_volume_temporaries)
register_source_restorer("server", restore_server_source)


# Cinder refuses to delete a volume in these states (a create or a transfer under way).
BUSY_VOLUME_STATES = frozenset({"creating", "attaching", "detaching", "downloading",
                                "uploading", "extending", "backing-up", "restoring-backup"})


def _volume_settled(api: Api, volume_id: str) -> bool:
    record = api.volume(volume_id)
    return record is None or record.get("status") not in BUSY_VOLUME_STATES


def _volume_gone(api: Api, volume_id: str) -> bool:
    record = api.volume(volume_id)
    return record is None


def undo_registry() -> HandlerRegistry:
    """A registry with an undo handler per kind (a rollback run's handlers only)."""
    registry = HandlerRegistry()
    for kind in UNDO_KINDS:
        registry.register(UNDO_PREFIX + kind, UndoHandler(kind))
    return registry
