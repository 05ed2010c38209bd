"""The data path: image bytes streamed between clouds, hashed while streaming, verified.

Public API: :func:`copy_image_data`, :func:`verify_target_image`, :class:`TransferResult`,
:class:`BandwidthLimiter`, :class:`TransferSlots`, :class:`TransferError`, the source readers
(:class:`GlanceV2Reader`, :class:`GlanceV1Reader`). This layer imports no CLI, plan or
handler code; progress goes through a callback.

The names are imported on first use (PEP 562): importing a submodule such as
``migrator.transfer.properties`` (the configuration does) must not pull in requests and
keystoneauth through the readers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrator.transfer.errors import TransferError, TransferInterrupted
    from migrator.transfer.glance_io import GlanceV1Reader, GlanceV2Reader, ImageReader
    from migrator.transfer.limits import BandwidthLimiter, TransferSlots
    from migrator.transfer.stream import TransferResult, copy_image_data, verify_target_image

_HOME = {
    "TransferError": "errors",
    "TransferInterrupted": "errors",
    "GlanceV1Reader": "glance_io",
    "GlanceV2Reader": "glance_io",
    "ImageReader": "glance_io",
    "BandwidthLimiter": "limits",
    "TransferSlots": "limits",
    "TransferResult": "stream",
    "copy_image_data": "stream",
    "verify_target_image": "stream",
}

__all__ = [
    "BandwidthLimiter",
    "GlanceV1Reader",
    "GlanceV2Reader",
    "ImageReader",
    "TransferError",
    "TransferInterrupted",
    "TransferResult",
    "TransferSlots",
    "copy_image_data",
    "verify_target_image",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
