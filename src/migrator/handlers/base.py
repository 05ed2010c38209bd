"""What every resource handler shares: spec reading, reference resolution, create-or-adopt,
read-back verification and in-doubt reconciliation.

A step's spec (written by the planner) is a :class:`migrator.spec.Spec`: ``attrs`` (the
create call's body), ``refs`` (attributes filled with other steps' target ids, through the id
map), ``lookup`` (what the handler needs to find or adopt, :class:`migrator.spec.Lookup`) and
``source``; handlers read its parts with :func:`spec_part`.

The first phase of every handler finds the resource on the target by the source id it carries
(``find_<kind>_by_source``) and adopts it, or creates it; it records the target id in the id
map and in the checkpoint (``target_id``, ``adopted``, and the ``calls``/``retries`` the phase
made, which the checkpoint event keeps in the audit trail). A create that fails with a
transient error (5xx, dropped connection: it may or may not have happened) is retried after
looking the resource up again, so a retry never duplicates (under the target cloud's retry
policy: its retries per call, its backoff, its budget; migrator/retry.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Literal, cast, overload

from migrator.clouds.target import TargetCloud, TargetCloudError, migrated_source_id
from migrator.engine.handlers import Handler, Reconciliation, StepContext
from migrator.engine.steps import StepSnapshot
from migrator.errors import ConfigError, StepFailedError
from migrator.handlers import idmap
from migrator.retry import Failed, call_with_retries
from migrator.spec import Lookup, SpecPart


def target_cloud(ctx: StepContext) -> TargetCloud:
    """The run's target adapter (``services.target``)."""
    target = ctx.services.target
    if target is None:
        raise ConfigError(
            f"step {ctx.step.key!r} needs the target cloud, but the executor was given no "
            "'target' service"
        )
    return target


@overload
def spec_part(step: StepSnapshot, part: Literal["lookup"]) -> Lookup: ...
@overload
def spec_part(step: StepSnapshot, part: Literal["attrs", "refs", "source"]) -> dict[str, Any]: ...
def spec_part(step: StepSnapshot, part: SpecPart) -> dict[str, Any] | Lookup:
    """A copy of one part of the step's spec ({} when absent)."""
    value: object = step.spec.get(part) or {}
    if not isinstance(value, dict):
        raise StepFailedError(f"step {step.key!r}: spec.{part} must be a mapping")
    return cast(dict[str, Any], dict(value))


def source_id_of(step: StepSnapshot) -> str:
    sid = step.source_id or spec_part(step, "source").get("id")
    if not sid:
        raise StepFailedError(f"step {step.key!r} has no source id")
    return str(sid)


def set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    node = target
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def resolve_attrs(ctx: StepContext, step: StepSnapshot) -> dict[str, Any]:
    """``spec.attrs`` with every ``spec.refs`` entry replaced by the referenced step's target
    id (a list of keys becomes a list of ids)."""
    attrs = spec_part(step, "attrs")
    for attr, ref in spec_part(step, "refs").items():
        if ref is None:
            continue
        if isinstance(ref, list):
            value: Any = [idmap.target_of(ctx.factory, step.run_id, str(r)) for r in ref]
        else:
            value = idmap.target_of(ctx.factory, step.run_id, str(ref))
        set_path(attrs, attr, value)
    return attrs


def same_value(want: Any, have: Any) -> bool:
    """Equality as the target echoes things: IP addresses and prefixes normalised, lists of
    scalars in any order, dicts compared on the wanted keys."""
    if want == have:
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return str(want).lower() == str(have).lower()
    if isinstance(want, str) and isinstance(have, str):
        for parse in (ipaddress.ip_address, ipaddress.ip_network):
            try:
                return bool(parse(want) == parse(have))
            except ValueError:
                continue
        return False
    if isinstance(want, dict) and isinstance(have, dict):
        return all(same_value(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        remaining = list(have)
        for item in want:
            match = next((i for i, h in enumerate(remaining) if same_value(item, h)), None)
            if match is None:
                return False
            remaining.pop(match)
        return True
    return False


def mismatches(
    want: Mapping[str, Any], have: Mapping[str, Any], fields: tuple[str, ...] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> list[str]:
    """``field: wanted X, target has Y`` for each wanted field the target echoes differently
    (fields the target does not echo are not compared)."""
    out = []
    for key in fields if fields is not None else tuple(want):
        if key in ignore or key not in want or key not in have:
            continue
        if not same_value(want[key], have[key]):
            out.append(f"{key}: wanted {want[key]!r}, target has {have[key]!r}")
    return out


class ResourceHandler(Handler):
    """Create-or-adopt in the first phase; subclasses implement the hooks below."""

    kind = ""
    phases: tuple[str, ...] = ("create",)
    # Fields of attrs compared on read-back (None: every attr the target echoes).
    verify_fields: tuple[str, ...] | None = None
    verify_ignore: frozenset[str] = frozenset({"tags", "password"})
    # Whether the resource carries its source id (tags, attribute, description).
    marked = True

    # -- hooks -------------------------------------------------------------------------------
    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def adopt_by_decision(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
                          attrs: dict[str, Any]) -> dict[str, Any] | None:
        """A resource the plan decided to adopt although migrator did not create it
        (``lookup.adopt_id``): mark it and return it. Default: none."""
        return None

    def target_id_of(self, resource: Mapping[str, Any], attrs: Mapping[str, Any]) -> str:
        return str(resource["id"])

    def extra_phase(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, phase: str,
                    attrs: dict[str, Any]) -> Mapping[str, Any] | None:
        raise NotImplementedError(f"{type(self).__name__} has no phase {phase!r}")

    def extra_checks(self, tc: TargetCloud, step: StepSnapshot, attrs: dict[str, Any],
                     resource: dict[str, Any]) -> list[str]:
        return []

    def shown(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A resource as :meth:`read` presents it (the create's answer goes through it)."""
        return resource

    def notes(self, resource: Mapping[str, Any]) -> Mapping[str, Any]:
        """Extra checkpoint data about the created or adopted resource."""
        return {}

    def is_marked(self, step: StepSnapshot) -> bool:
        """Whether the step's target resource must carry the source id (checked on verify)."""
        return self.marked

    # -- the engine's interface ----------------------------------------------------------
    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:
        tc = target_cloud(ctx)
        with tc.counting() as counted:
            attrs = resolve_attrs(ctx, step)
            if phase == self.phases[0]:
                data = dict(self._create_or_adopt(ctx, tc, step, attrs))
            else:
                data = dict(self.extra_phase(ctx, tc, step, phase, attrs) or {})
        data[f"{phase}_calls"] = counted["calls"]
        if counted["retries"]:
            data[f"{phase}_retries"] = counted["retries"]
        return data

    def _create_or_adopt(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot,
                         attrs: dict[str, Any]) -> Mapping[str, Any]:
        source_id = source_id_of(step)

        def once() -> tuple[dict[str, Any], str] | Failed:
            found = self.find(tc, step, source_id, attrs)
            if found is not None:
                return found, "source"
            found = self.adopt_by_decision(tc, step, source_id, attrs)
            if found is not None:
                return found, "decision"
            try:
                return self.create(ctx, tc, step, source_id, attrs), ""
            except TargetCloudError as exc:
                # It may or may not have happened: the next try looks it up first.
                return Failed(exc, retryable=exc.transient)

        def note(attempt: int, delay: float, error: BaseException) -> None:
            tc.note_retry()
            ctx.log.info("step %s: create failed (%s); looking again before retrying",
                         step.key, error)

        resource, adopted = call_with_retries(once, tc.retry, on_retry=note)
        # The target's answer (the create's, or the listing that found it): what verification
        # compares in this execution of the step, instead of reading the resource again.
        ctx.answers["resource"] = resource
        target_id = self.target_id_of(resource, attrs)
        idmap.record_target(ctx, source_id, target_id)
        data: dict[str, Any] = {"target_id": target_id, **self.notes(resource)}
        if adopted:
            data["adopted"] = adopted
        return data

    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        tc = target_cloud(ctx)
        target_id = step.checkpoint.get("target_id")
        if not target_id:
            raise StepFailedError(f"step {step.key!r} has no target id to verify")
        attrs = resolve_attrs(ctx, step)
        answer = ctx.answers.get("resource")
        if answer is not None and self.target_id_of(answer, attrs) != str(target_id):
            answer = None
        problems = self.differences(tc, step, str(target_id), attrs, answer)
        if problems:
            raise StepFailedError(
                f"step {step.key!r}: target {step.kind} {target_id} differs: "
                + "; ".join(problems)
            )

    def differences(self, tc: TargetCloud, step: StepSnapshot, target_id: str,
                    attrs: dict[str, Any], answer: Mapping[str, Any] | None = None
                    ) -> list[str]:
        """How the target resource differs from the plan's ``attrs`` (references resolved),
        in words; empty when it matches. A resource that is gone raises NotFoundError (the
        adapter's 404). Also what ``migrator verify`` asks, long after the run. ``answer``:
        the resource as the target answered its create (or the lookup that found it) in this
        execution of the step, compared instead of a new read."""
        resource = (self.shown(dict(answer)) if answer is not None
                    else self.read(tc, target_id, step, attrs))
        if step.checkpoint.get("adopted") == "decision":
            problems = mismatches(attrs, resource, ("name",))
        else:
            problems = mismatches(attrs, resource, self.verify_fields, self.verify_ignore)
            problems += self.extra_checks(tc, step, attrs, resource)
        if self.is_marked(step) and migrated_source_id(resource) != source_id_of(step):
            problems.append(f"source id mark: wanted {source_id_of(step)!r}, target has "
                            f"{migrated_source_id(resource)!r}")
        return problems

    def reconcile(self, ctx: StepContext, step: StepSnapshot) -> Reconciliation:
        """In doubt after a crash: trust a recorded target id, else look on the target by the
        source id: adopt what is there, or start over."""
        if step.checkpoint.get("target_id"):
            return Reconciliation.DONE if step.phase == self.phases[-1] else Reconciliation.RESUME
        tc = target_cloud(ctx)
        try:
            attrs = resolve_attrs(ctx, step)
        except StepFailedError:
            return Reconciliation.RESTART
        source_id = source_id_of(step)
        resource = self.find(tc, step, source_id, attrs)
        if resource is None:
            return Reconciliation.RESTART
        target_id = self.target_id_of(resource, attrs)
        idmap.record_target(ctx, source_id, target_id)
        ctx.checkpoint(self.phases[0], {"target_id": target_id, "adopted": "in-doubt",
                                        **self.notes(resource)})
        return Reconciliation.DONE if len(self.phases) == 1 else Reconciliation.RESUME
