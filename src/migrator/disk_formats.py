"""What an image's bytes really are: the disk format read from their first bytes (and, for a
VHD whose footer is only at the end, from their last 512).

Old clouds hold images whose ``disk_format`` label does not match their bytes (a qcow2 file
uploaded as ``raw``, a raw disk labelled ``qcow2``). Modern Glance refuses such an upload
(``[image_format] require_image_format_match``, on by default since Glance 29): discovery
reads each image's head once (:data:`HEAD_BYTES`, one ranged GET) and records what it found,
the planner corrects or keeps the label (``image_formats`` in the configuration), and the
simulator's modern Glance refuses a mismatch the way Glance does (:func:`glance_accepts`).

The signatures are those of oslo.utils' format inspector, which Glance uses:

    qcow2   ``QFI\\xfb`` at 0            vhdx  ``vhdxfile`` at 0
    vmdk    ``KDMV`` at 0 (sparse)        iso   ``CD001`` at 32769 (ISO 9660 primary volume
                                                descriptor, sector 16 of 2048 bytes)
    vhd     ``conectix`` at 0 (dynamic VHD: a copy of its footer) or in the last 512 bytes
            (fixed VHD: the footer only)
    raw     none of these
"""

from __future__ import annotations

# Enough for every head signature: the ISO 9660 descriptor at 32768 is 2048 bytes long (the
# region oslo.utils' ISO inspector reads).
HEAD_BYTES = 32 * 1024 + 2 * 1024
TAIL_BYTES = 512
ISO_OFFSET = 32769

QCOW2_MAGIC = b"QFI\xfb"
VHDX_MAGIC = b"vhdxfile"
VMDK_MAGIC = b"KDMV"
VHD_MAGIC = b"conectix"
ISO_MAGIC = b"CD001"

# The ``disk_format`` values Glance's inspector knows (a label outside this set, such as
# ami/aki/ari, is not checked by Glance and not corrected here).
INSPECTABLE = frozenset({"raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "qed", "iso", "gpt",
                         "luks"})


def detect_head(head: bytes) -> str | None:
    """The format the first bytes show (None: none of the head signatures, maybe a fixed VHD
    or raw; read the tail to tell)."""
    if head.startswith(QCOW2_MAGIC):
        return "qcow2"
    if head.startswith(VHDX_MAGIC):
        return "vhdx"
    if head.startswith(VMDK_MAGIC):
        return "vmdk"
    if head.startswith(VHD_MAGIC):
        return "vhd"
    if head[ISO_OFFSET:ISO_OFFSET + len(ISO_MAGIC)] == ISO_MAGIC:
        return "iso"
    return None


def detect_tail(tail: bytes) -> str | None:
    """``vhd`` when the last 512 bytes are a VHD footer, else None."""
    return "vhd" if tail[-TAIL_BYTES:].startswith(VHD_MAGIC) else None


def detect(head: bytes, tail: bytes | None = None) -> str:
    """The content format of an image from its head (and tail, when read)."""
    return detect_head(head) or (detect_tail(tail) if tail is not None else None) or "raw"


def label_mismatch(disk_format: str | None, container_format: str | None,
                   content: str | None) -> bool:
    """Whether a ``disk_format`` label contradicts the detected content, as far as Glance can
    tell: only ``bare`` containers are inspected, only labels the inspector knows are checked,
    and a ``raw`` label with rich content is let through by Glance but still wrong (the guest
    would see a qcow2 file as its disk)."""
    if not content or not disk_format or disk_format not in INSPECTABLE:
        return False
    if container_format not in (None, "", "bare"):
        return False
    return disk_format != content


def glance_accepts(disk_format: str | None, container_format: str | None,
                   head_format: str) -> bool:
    """What Glance 33 does after an upload with ``require_image_format_match`` on
    (glance/location.py, ``set_data``): ``head_format`` is what its inspector saw, which reads
    the stream from the start only (a fixed VHD's footer at the end is not seen: raw).

    A matching label passes; a ``raw`` label passes whatever the content; content seen as raw
    passes under a label the inspector does not know (ami, aki...); anything else is refused.
    Containers other than ``bare`` are not inspected."""
    if container_format not in (None, "", "bare"):
        return True
    if disk_format == head_format or disk_format == "raw":
        return True
    return head_format == "raw" and disk_format not in INSPECTABLE
