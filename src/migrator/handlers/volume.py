"""Handler for Cinder volumes: the phases of transfer/volume.py, each a checkpoint.

Spec: attrs {name, description, size, bootable, metadata, volume_type (mapped; None: the
target's default), volume_image_metadata (properties translated at plan time)}; refs
{project_id, ``image_ids.<legacy image id>``: the image step, when that image is migrated in
the same plan}. The volume is created in its migrated project (a target token scoped to it).

The phases (upload_to_image ... verify) run in order; after each the step's checkpoint holds
the copy's checkpoint under ``copy`` (ids made so far, bytes copied), so a resumed step goes
on from the phase it reached; a phase that finds an earlier phase's result gone rewinds the
copy (transfer/volume.py). Every phase first looks for what a killed run left (temporary
images by name, the target volume by its ``migrator_source_id`` metadata), so nothing is made
twice even when the checkpoint was lost. Only ``copy_temp_image`` holds a transfer slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrator.engine.handlers import Handler, StepContext, StepInterrupted
from migrator.engine.steps import StepSnapshot
from migrator.errors import StepFailedError
from migrator.handlers import idmap
from migrator.handlers.base import resolve_attrs, source_id_of, target_cloud
from migrator.handlers.data import (
    data_services,
    run_again_on_transient,
    scoped_target,
    source_cloud,
)
from migrator.transfer.errors import TransferInterrupted
from migrator.transfer.properties_rules import RuleSet
from migrator.transfer.volume import (
    MAX_REWINDS,
    PHASE_NAMES,
    PhaseRewind,
    VolumeCopy,
    next_phase,
    run_phase,
)
from migrator.transfer.volume_api import Api

COPY_PHASE = "copy_temp_image"
# The phases that create something without copying bytes (the legacy temporary image, the
# target volume): each looks for what an earlier try made first, so a transient failure runs
# it again at once (handlers/data.py) instead of failing the step. The byte copy is retried
# by the step (a fresh stream each time), as are the waits and verify.
RUN_AGAIN = frozenset({"upload_to_image", "create_target_volume"})


class VolumeHandler(Handler):
    kind = "volume"
    phases = PHASE_NAMES

    def copy_context(self, ctx: StepContext, step: StepSnapshot) -> VolumeCopy:
        attrs = resolve_attrs(ctx, step)
        project_id = attrs.get("project_id")
        if not project_id:
            raise StepFailedError(f"step {step.key!r}: no target project (spec.refs.project_id)")
        services = data_services(ctx)
        volume = {k: v for k, v in attrs.items()
                  if k not in ("volume_type", "image_ids", "project_id")}
        volume["id"] = source_id_of(step)
        return VolumeCopy(
            source_cloud(ctx), scoped_target(ctx, str(project_id)), volume,
            volume_type=attrs.get("volume_type"), options=services.options,
            # Translated at plan time: only image_id is mapped here.
            rules=RuleSet(), image_ids=dict(attrs.get("image_ids") or {}),
            limiter=services.limiter, stop=ctx.stop_event)

    def run(self, ctx: StepContext, step: StepSnapshot) -> None:
        vc = self.copy_context(ctx, step)
        services = data_services(ctx)
        cp: dict[str, Any] = dict(step.checkpoint.get("copy") or {})
        rewinds = 0
        while (name := next_phase(cp)) is not None:
            ctx.raise_if_stopping()
            try:
                cp = self._phase(ctx, vc, cp, name, services)
            except PhaseRewind as exc:
                assert exc.checkpoint is not None
                cp = exc.checkpoint
                ctx.checkpoint(ctx.step.phase or name, {"copy": cp, "rewound_to":
                                                        exc.rewind_to})
                rewinds += 1
                if rewinds > MAX_REWINDS:
                    raise
                ctx.log.warning("step %s: %s (back to %s)", step.key, exc.message,
                                exc.rewind_to)
                continue
            except TransferInterrupted:
                raise StepInterrupted(step.key) from None
            data: dict[str, Any] = {"copy": cp}
            target_id = cp.get("target_volume_id")
            if target_id and target_id != ctx.step.checkpoint.get("target_id"):
                idmap.record_target(ctx, source_id_of(step), str(target_id))
                data["target_id"] = target_id
            ctx.checkpoint(name, data)

    def _phase(self, ctx: StepContext, vc: VolumeCopy, cp: dict[str, Any], name: str,
               services: Any) -> dict[str, Any]:
        if name in RUN_AGAIN:
            policy = target_cloud(ctx).retry
            return run_again_on_transient(
                ctx, name, lambda: self._one_phase(ctx, vc, cp, name, services), policy)
        return self._one_phase(ctx, vc, cp, name, services)

    def _one_phase(self, ctx: StepContext, vc: VolumeCopy, cp: dict[str, Any], name: str,
                   services: Any) -> dict[str, Any]:
        if name != COPY_PHASE or cp.get("target_volume_id"):
            return run_phase(vc, cp, name)
        total = (cp.get("source_temp_image") or {}).get("size")
        step = ctx.step
        slot = services.needs_slot(step.planned_bytes,
                                   int(total) if total is not None else None)
        if slot and not services.slots.acquire(ctx.stop_event):
            raise StepInterrupted(ctx.step.key)
        vc.progress = services.track(step.key, f"volume {step.name or step.source_id}"
                                     + (f" ({step.tenant})" if step.tenant else ""),
                                     int(total) if total is not None else None)
        ok = False
        try:
            out = run_phase(vc, cp, name)
            ok = True
            return out
        finally:
            vc.progress = None
            if slot:
                services.slots.release()
            services.done(step.key, ok)

    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:  # pragma: no cover - run() drives phases
        raise NotImplementedError("VolumeHandler.run drives the phases")

    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        """The copy's own verify phase compared everything; here: it ran, and the volume is
        still there and available."""
        cp = step.checkpoint.get("copy") or {}
        target_id = cp.get("target_volume_id")
        if not cp.get("verified") or not target_id:
            raise StepFailedError(f"step {step.key!r}: the volume copy did not verify "
                                  f"(reached {cp.get('phase')})")
        attrs = resolve_attrs(ctx, step)
        vol = Api(scoped_target(ctx, str(attrs["project_id"]))).volume(str(target_id))
        if vol is None or vol.get("status") != "available":
            raise StepFailedError(f"step {step.key!r}: target volume {target_id} is "
                                  f"{vol.get('status') if vol else 'gone'}")
