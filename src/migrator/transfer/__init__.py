"""The data path: image bytes streamed between clouds, hashed while streaming, verified.

Public API: :func:`copy_image_data`, :func:`verify_target_image`, :class:`TransferResult`,
:class:`BandwidthLimiter`, :class:`TransferSlots`, :class:`TransferError`, the source readers
(:class:`GlanceV2Reader`, :class:`GlanceV1Reader`). This layer imports no CLI, plan or
handler code; progress goes through a callback.
"""

from migrator.transfer.errors import TransferError, TransferInterrupted
from migrator.transfer.glance_io import GlanceV1Reader, GlanceV2Reader, ImageReader
from migrator.transfer.limits import BandwidthLimiter, TransferSlots
from migrator.transfer.stream import TransferResult, copy_image_data, verify_target_image

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
