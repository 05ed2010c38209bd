"""Handler for Nova servers: the cutover of one server as resumable phases, one checkpoint
each (the phase functions are in server_phases.py)::

    record           the source's power state and the start of the window (no cloud write)
    stop_source      os-stop, wait SHUTOFF (policy ``snapshot_running``: nothing yet)
    snapshot         image-backed: createImage (``migrator-snap-<server id>``), wait active
    copy             the snapshot's bytes into the target boot image (streamed, md5 and
                     sha512 checked), each attached volume through the volume path
                     (transfer/volume.py: temporary images, target volume, verified);
                     each volume's mapping goes to the run's id map as a ``volume``'s
    ports            a target port per source port, on the migrated network and IPv6 subnet,
                     same MAC, same security groups, tagged with the source port id
    boot             (``snapshot_running``: the source stopped now) the target server booted
                     as its owner: mapped flavor, the ports, key, metadata + source id mark,
                     the boot image or volume, the data volumes in their order
    wait_active      ACTIVE within ``servers.active_timeout`` (ERROR fails the step with
                     Nova's fault); a source that was SHUTOFF is stopped again on the target
    verify_target    flavor, addresses, key, attachments in order, boot image properties;
                     the downtime recorded in the state database (server_downtimes)
    cleanup          the source snapshot image and every temporary image removed, both sides

Nothing is made twice, whatever a SIGKILL lost: the snapshot image has a deterministic name,
the boot image and the ports carry the source id in their tags, the target server in its
metadata (``migrator_source_id``), the volumes as in the volume path; every phase looks for
what an earlier try made before it makes anything. The source server is never deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrator.engine.handlers import Handler, StepContext, StepInterrupted
from migrator.engine.steps import StepSnapshot
from migrator.errors import StepFailedError
from migrator.handlers import idmap
from migrator.handlers.base import source_id_of, target_cloud
from migrator.handlers.server_phases import PHASES, make_cutover, read_server
from migrator.transfer.errors import TransferInterrupted
from migrator.transfer.volume_api import Api


class ServerHandler(Handler):
    kind = "server"
    phases = tuple(name for name, _ in PHASES)

    def run(self, ctx: StepContext, step: StepSnapshot) -> None:
        cut = make_cutover(ctx, step)
        phases = dict(PHASES)
        remaining = self.remaining_phases(step)
        for name in remaining:
            ctx.raise_if_stopping()
            try:
                data = dict(phases[name](cut, dict(ctx.step.checkpoint)) or {})
            except TransferInterrupted:
                raise StepInterrupted(step.key) from None
            _record_volumes(ctx, data)
            target_id = data.get("target_server_id")
            if target_id and target_id != ctx.step.checkpoint.get("target_id"):
                idmap.record_target(ctx, source_id_of(step), str(target_id))
                data["target_id"] = target_id
            ctx.checkpoint(name, data, last=name == remaining[-1])

    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:  # pragma: no cover - run() drives phases
        raise NotImplementedError("ServerHandler.run drives the phases")

    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        """verify_target compared everything; here: it ran, and the target server is still
        there in the power state it was left in."""
        cp = step.checkpoint
        target_id = cp.get("target_server_id")
        if not cp.get("verified") or not target_id:
            raise StepFailedError(f"step {step.key!r}: the server cutover did not verify "
                                  f"(reached {step.phase})")
        # The target alone (``migrator verify`` calls this with no source).
        server = read_server(Api(target_cloud(ctx).handle), str(target_id))
        want = "SHUTOFF" if cp.get("power_state") == "SHUTOFF" else "ACTIVE"
        if server is None or server.get("status") != want:
            raise StepFailedError(f"step {step.key!r}: target server {target_id} is "
                                  f"{server.get('status') if server else 'gone'}, not {want}")


def _record_volumes(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """The volumes a phase moved, in the run's id map as volumes (source -> target volume
    id): ``migrator audit``, ``report`` and later runs' lookups see them like a volume
    step's. Written each time the copy phase ends (an upsert: the sub-step checkpoints of
    the copy already hold the ids, so there is no telling here which are new)."""
    for vid, copied in (data.get("volumes") or {}).items():
        target = (copied or {}).get("target_volume_id")
        if target:
            idmap.record_carried(ctx, "volume", str(vid), str(target))
