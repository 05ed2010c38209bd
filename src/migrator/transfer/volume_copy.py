"""The context of a volume copy (:class:`VolumeCopy`, :class:`VolumeOptions`), the rewind
error and the helpers the phases share. The phases are in volume_phases.py, the runner in
volume.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from migrator.transfer.errors import TransferError
from migrator.transfer.limits import BandwidthLimiter
from migrator.transfer.properties import DEFAULT_RULES
from migrator.transfer.properties_rules import RuleSet
from migrator.transfer.volume_api import Api

log = logging.getLogger(__name__)

TEMP_PREFIX = "migrator-tmp-"
TEMP_TAG = "migrator-tmp"
SOURCE_KEY = "migrator_source_id"  # target volume metadata: the source volume id
SOURCE_TAG_PREFIX = "migrator-src-"  # as clouds.target_base.source_tag
# Target volume statuses that will (or did) become available: adopt such a volume.
USABLE = ("creating", "downloading", "available")
# Source volume statuses that pass by themselves: wait, retry later.
TRANSIENT = ("creating", "downloading", "uploading", "attaching", "detaching", "extending",
             "retyping", "backing-up", "restoring-backup", "maintenance")


def temp_image_name(volume_id: str) -> str:
    return f"{TEMP_PREFIX}{volume_id}"


@dataclass(frozen=True)
class VolumeOptions:
    allow_force_upload: bool = False  # upload in-use volumes (crash-consistent copy)
    disk_format: str = "raw"
    container_format: str = "bare"
    poll_interval: float = 2.0  # seconds between status reads
    image_timeout: float = 6 * 3600.0  # legacy upload until the temporary image is active
    volume_timeout: float = 6 * 3600.0  # target volume until available
    request_timeout: float = 300.0  # socket timeout of the image transfer
    chunk_size: int = 1 << 20


@dataclass
class VolumeCopy:
    """Everything the phases of one volume need. ``volume`` is the source volume's raw JSON
    (the inventory's); ``volume_type`` the mapped target type (name or id; None: the
    target's default); ``image_ids`` maps legacy image ids to migrated target ones (for
    ``volume_image_metadata.image_id``); ``rules`` translate the image metadata's
    properties. ``source``/``target``: openstacksdk Connections or CloudHandles (the target
    scoped to the volume's target project)."""

    source: Any
    target: Any
    volume: Mapping[str, Any]
    volume_type: str | None = None
    options: VolumeOptions = field(default_factory=VolumeOptions)
    rules: RuleSet = DEFAULT_RULES
    image_ids: Mapping[str, str] = field(default_factory=dict)
    limiter: BandwidthLimiter | None = None
    progress: Callable[[int], None] | None = None
    stop: threading.Event | None = None
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self.src = Api(self.source)
        self.dst = Api(self.target)

    @property
    def volume_id(self) -> str:
        return str(self.volume["id"])

    @property
    def temp_name(self) -> str:
        return temp_image_name(self.volume_id)

    def what(self) -> str:
        return f"volume {self.volume_id} on cloud {self.src.name}"

    @property
    def size(self) -> int:
        return int(self.volume["size"])

    @property
    def name(self) -> str | None:
        value = self.volume.get("name", self.volume.get("display_name"))
        return None if value is None else str(value)

    @property
    def description(self) -> str | None:
        value = self.volume.get("description", self.volume.get("display_description"))
        return None if value is None else str(value)

    @property
    def metadata(self) -> dict[str, str]:
        """The source volume's metadata plus the source id mark."""
        meta = {str(k): str(v) for k, v in (self.volume.get("metadata") or {}).items()}
        meta[SOURCE_KEY] = self.volume_id
        return meta


Checkpoint = dict[str, Any]
Phase = Callable[[VolumeCopy, Checkpoint], Checkpoint]


class PhaseRewind(TransferError):
    """An earlier phase's result is gone (the legacy image killed, the target volume in
    error): the copy resumes from phase ``rewind_to``, forgetting what that phase and the
    later ones recorded. :func:`migrator.transfer.volume.run_phase` sets ``checkpoint`` to
    the rewound checkpoint, which the caller saves."""

    def __init__(self, message: str, *, rewind_to: str) -> None:
        super().__init__(message, retryable=True)
        self.rewind_to = rewind_to
        self.checkpoint: dict[str, Any] | None = None


def need(cp: Checkpoint, key: str, phase: str) -> str:
    """A checkpoint value an earlier phase recorded; missing, that phase runs again."""
    value = cp.get(key)
    if not value:
        raise PhaseRewind(f"the checkpoint has no {key}: {phase} runs again",
                          rewind_to=phase)
    return str(value)


def flag(value: Any) -> bool:
    """Cinder's bootable: a boolean, or the string "true"/"false" (v2/v3 render it so)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


# -- shared lookups --------------------------------------------------------------------------------
def target_volumes(ctx: VolumeCopy) -> list[dict[str, Any]]:
    return ctx.dst.volumes_with_metadata(SOURCE_KEY, ctx.volume_id)


def wait_for(ctx: VolumeCopy, what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if ctx.stop is not None and ctx.stop.is_set():
            raise TransferError(f"{what}: stopped while waiting", retryable=True)
        if time.monotonic() >= deadline:
            raise TransferError(f"{what}: still not done after {timeout:g}s", retryable=True)
        ctx.sleep(ctx.options.poll_interval)


