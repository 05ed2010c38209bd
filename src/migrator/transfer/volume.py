"""A volume's data path as explicit, resumable phases (design: docs/architecture.md, the data
path; what each phase does: volume_phases.py)::

    upload_to_image              legacy os-volume_upload_image -> temporary image (legacy)
    wait_temp_image_active       that image becomes active
    copy_temp_image              its bytes streamed into a temporary image on the target
    create_target_volume         the target volume from that image (type, size, metadata)
    wait_target_volume_available
    set_volume_attributes        bootable flag, metadata and image metadata as on the source
    cleanup_temp_images          both temporary images deleted (404 is fine)
    verify                       status, size, type, bootable, metadata, image metadata

Each phase is ``phase(ctx, checkpoint) -> dict`` (what to merge into the checkpoint). The
checkpoint is a plain JSON-able dict the step row keeps: ``phase`` (the last phase done) and
the ids made so far (``source_temp_image_id``, ``target_temp_image_id``,
``target_volume_id``), the temporary image's size and checksum, the bytes copied.

    ctx = VolumeCopy(legacy, target, source_volume_raw, volume_type="ssd")
    checkpoint = run_volume_copy(ctx, step.checkpoint, save=step.save_checkpoint)

Nothing is made twice, whatever was lost: the temporary images have a deterministic name
(``migrator-tmp-<source volume id>``) and the target volume carries the source id in its
metadata (``migrator_source_id``), so every phase looks for what a killed run left before it
makes anything, an empty checkpoint after a SIGKILL included. A phase that finds an earlier
phase's result gone (the legacy image killed, the target volume in error) raises
:class:`PhaseRewind`; the checkpoint moves back to that phase, and :func:`run_volume_copy`
goes on from there (a few times at most) instead of failing the step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from migrator.transfer.volume_copy import (
    Checkpoint,
    Phase,
    PhaseRewind,
    VolumeCopy,
    VolumeOptions,
    temp_image_name,
)
from migrator.transfer.volume_phases import (
    cleanup_temp_images,
    copy_temp_image,
    create_target_volume,
    set_volume_attributes,
    upload_to_image,
    verify,
    wait_target_volume_available,
    wait_temp_image_active,
)

log = logging.getLogger(__name__)

__all__ = ["PHASES", "PHASE_NAMES", "Checkpoint", "PhaseRewind", "VolumeCopy", "VolumeOptions",
           "next_phase", "rewound", "run_phase", "run_volume_copy", "temp_image_name"]

PHASES: tuple[tuple[str, Phase], ...] = (
    ("upload_to_image", upload_to_image),
    ("wait_temp_image_active", wait_temp_image_active),
    ("copy_temp_image", copy_temp_image),
    ("create_target_volume", create_target_volume),
    ("wait_target_volume_available", wait_target_volume_available),
    ("set_volume_attributes", set_volume_attributes),
    ("cleanup_temp_images", cleanup_temp_images),
    ("verify", verify),
)
PHASE_NAMES = tuple(name for name, _ in PHASES)
# What each phase records: forgotten when the copy rewinds to that phase or an earlier one.
RECORDS: dict[str, tuple[str, ...]] = {
    "upload_to_image": ("source_temp_image_id",),
    "wait_temp_image_active": ("source_temp_image",),
    "copy_temp_image": ("target_temp_image_id", "copied"),
    "create_target_volume": ("target_volume_id",),
    "cleanup_temp_images": ("temp_images_deleted",),
    "verify": ("verified",),
}
MAX_REWINDS = 3


def next_phase(checkpoint: Checkpoint) -> str | None:
    """The phase to run next (None: the copy is done)."""
    done = checkpoint.get("phase")
    if done is None:
        return PHASE_NAMES[0]
    if done not in PHASE_NAMES:
        raise ValueError(f"unknown phase {done!r} in the checkpoint")
    index = PHASE_NAMES.index(done) + 1
    return PHASE_NAMES[index] if index < len(PHASE_NAMES) else None


def rewound(checkpoint: Checkpoint, phase: str) -> Checkpoint:
    """The checkpoint as it was before ``phase`` ran: ``phase`` set to the one before, and what
    ``phase`` and the later phases recorded forgotten. Adopted ids are found again by name or
    metadata when the phases run."""
    index = PHASE_NAMES.index(phase)
    out = dict(checkpoint)
    for name in PHASE_NAMES[index:]:
        for key in RECORDS.get(name, ()):
            out.pop(key, None)
    if index == 0:
        out.pop("phase", None)
    else:
        out["phase"] = PHASE_NAMES[index - 1]
    return out


def run_phase(ctx: VolumeCopy, checkpoint: Checkpoint, name: str) -> Checkpoint:
    """Run one phase; return the new checkpoint (a copy with the phase's results and
    ``phase: name``). On :class:`PhaseRewind` the exception's ``checkpoint`` is the rewound
    checkpoint to save before retrying."""
    phase = dict(PHASES)[name]
    try:
        update = phase(ctx, dict(checkpoint))
    except PhaseRewind as exc:
        exc.checkpoint = rewound(checkpoint, exc.rewind_to)
        raise
    return {**checkpoint, **update, "phase": name}


def run_volume_copy(ctx: VolumeCopy, checkpoint: Checkpoint | None = None, *,
                    save: Callable[[Checkpoint], None] | None = None,
                    max_rewinds: int = MAX_REWINDS) -> Checkpoint:
    """Run the phases from where ``checkpoint`` stopped to the end, calling ``save`` with
    the checkpoint after each phase (and after a rewind). Returns the final checkpoint.
    Raises TransferError (``retryable`` tells the step what to do), the last PhaseRewind
    after ``max_rewinds`` of them."""
    cp: Checkpoint = dict(checkpoint or {})
    rewinds = 0
    while (name := next_phase(cp)) is not None:
        try:
            cp = run_phase(ctx, cp, name)
        except PhaseRewind as exc:
            assert exc.checkpoint is not None
            cp = exc.checkpoint
            if save is not None:
                save(cp)
            rewinds += 1
            if rewinds > max_rewinds:
                raise
            log.warning("%s (back to %s)", exc.message, exc.rewind_to)
            continue
        if save is not None:
            save(cp)
    return cp
