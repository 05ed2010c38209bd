"""Image bytes: generated from a seed (no disk) or stored as files, hashed while streaming.

A generated image of any size costs no disk: its bytes are a deterministic function of
``(seed, size, format)``. Block ``i`` is a 1 MiB pseudo-random base block (from the seed) with
``i`` written in its first 8 bytes, so every block differs and producing one costs a memory
copy. A ``format`` (qcow2, vmdk, vhdx, vhd, vhd-fixed, iso; default none: raw bytes) lays that
format's header over the first bytes (and a VHD footer over the last 512), well-formed enough
for Glance's format inspector (oslo.utils) to recognise it and pass its safety checks: no
backing file, no data file, a sparse VMDK with one extent and no path in its name.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

BLOCK = 1 << 20


@lru_cache(maxsize=64)
def _base_block(seed: int) -> bytes:
    return random.Random(seed).randbytes(BLOCK)


def generated_block(seed: int, index: int) -> bytes:
    base = _base_block(seed)
    return struct.pack(">Q", index) + base[8:]


# Formats a generated content can carry (``vhd``: a dynamic VHD, footer copy at 0 and footer
# at the end; ``vhd-fixed``: a fixed VHD, footer at the end only).
GENERATED_FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vhd", "vhd-fixed", "iso")


def _vhd_footer(size: int, dynamic: bool) -> bytes:
    # cookie, features, version, data offset (the dynamic header; none for a fixed disk),
    # timestamp, creator, original and current size
    data_offset = struct.pack(">Q", 512) if dynamic else b"\xff" * 8
    footer = (b"conectix" + struct.pack(">II", 2, 0x00010000) + data_offset
              + struct.pack(">I", 0) + b"mgr " + struct.pack(">I", 0x00010000) + b"Wi2k"
              + struct.pack(">QQ", size, size))
    return footer.ljust(512, b"\0")


def format_patches(fmt: str | None, size: int) -> list[tuple[int, bytes]]:
    """(offset, bytes) laid over generated content of ``size`` bytes to make it ``fmt``."""
    if fmt in (None, "", "raw"):
        return []
    if fmt == "qcow2":
        # version 3, no backing file, 64 KiB clusters, no encryption, no feature bits,
        # refcount order 4, header length 104
        head = (b"QFI\xfb" + struct.pack(">IQIIQIIQQIIQ", 3, 0, 0, 16, size, 0, 0, 0, 0, 0, 0,
                                          0)
                + struct.pack(">QQQII", 0, 0, 0, 4, 104))
        return [(0, head.ljust(512, b"\0"))]
    if fmt == "vmdk":
        sectors = max(size // 512, 1)
        descriptor = (
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
            'createType="monolithicSparse"\n\n# Extent description\n'
            f'RW {sectors} SPARSE "disk.vmdk"\n\n# The Disk Data Base\n'
            'ddb.virtualHWVersion = "4"\n').encode()
        # magic, version, flags, capacity, grain, descriptor at sector 1 for 1 sector,
        # GTEs per GT, redundant and primary grain directory (not at the end)
        head = b"KDMV" + struct.pack("<IIQQQQIQQ", 1, 3, sectors, 128, 1, 1, 512, 0, 2)
        return [(0, head.ljust(512, b"\0")), (512, descriptor.ljust(512, b"\0"))]
    if fmt == "vhdx":
        # file identifier, then an empty region table at 192 KiB (signature "regi", 0 entries)
        return [(0, b"vhdxfile".ljust(512, b"\0")),
                (192 * 1024, b"regi" + struct.pack("<III", 0, 0, 0))]
    if fmt == "vhd":
        footer = _vhd_footer(size, dynamic=True)
        return [(0, footer), (512, b"cxsparse".ljust(512, b"\0")), (max(size - 512, 0), footer)]
    if fmt == "vhd-fixed":
        return [(max(size - 512, 0), _vhd_footer(size, dynamic=False))]
    if fmt == "iso":
        # a primary volume descriptor in sector 16: type 1, "CD001", version 1, the volume
        # space size (blocks) at 80 and the logical block size at 128, both-endian
        blocks = max(size // 2048, 1)
        pvd = bytearray(2048)
        pvd[0:7] = b"\x01CD001\x01"
        pvd[80:88] = struct.pack("<I", blocks) + struct.pack(">I", blocks)
        pvd[128:132] = struct.pack("<H", 2048) + struct.pack(">H", 2048)
        return [(32768, bytes(pvd))]
    raise ValueError(f"unknown generated format {fmt!r} (known: {', '.join(GENERATED_FORMATS)})")


def _patched(piece: bytes, pos: int, patches: list[tuple[int, bytes]]) -> bytes:
    end = pos + len(piece)
    out: bytearray | None = None
    for at, data in patches:
        lo, hi = max(at, pos), min(at + len(data), end)
        if lo < hi:
            if out is None:
                out = bytearray(piece)
            out[lo - pos:hi - pos] = data[lo - at:hi - at]
    return piece if out is None else bytes(out)


def generated_chunks(seed: int, size: int, offset: int = 0, fmt: str | None = None,
                     stop: int | None = None) -> Iterator[bytes]:
    """The bytes ``[offset, stop or size)`` of the generated content, in blocks of at most
    1 MiB (a short range costs only its own bytes, not its whole block)."""
    patches = format_patches(fmt, size)
    limit = size if stop is None else min(stop, size)
    pos = offset
    while pos < limit:
        index, within = divmod(pos, BLOCK)
        block = generated_block(seed, index)
        end = min(BLOCK, limit - index * BLOCK)
        piece = block[within:end] if within or end < BLOCK else block
        if patches:
            piece = _patched(piece, pos, patches)
        yield piece
        pos += len(piece)


def file_chunks(path: Path, offset: int = 0) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(offset)
        while True:
            piece = fh.read(BLOCK)
            if not piece:
                return
            yield piece


@dataclass
class Digest:
    size: int
    md5: str
    sha512: str


class Hasher:
    """md5 and sha512 of a stream, updated as the bytes pass."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha512 = hashlib.sha512()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.md5.update(data)
        self.sha512.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(self.size, self.md5.hexdigest(), self.sha512.hexdigest())


def content_chunks(spec: dict[str, Any], offset: int = 0, stop: int | None = None
                   ) -> Iterator[bytes]:
    """Iterate the bytes an image's ``_content`` spec describes (from ``offset``; generated
    content ends at ``stop`` when given, file content is cut by the caller)."""
    if spec["kind"] == "generated":
        return generated_chunks(int(spec["seed"]), int(spec["size"]), offset,
                                spec.get("format"), stop)
    if spec["kind"] == "file":
        return file_chunks(Path(spec["path"]), offset)
    raise ValueError(f"unknown content kind {spec['kind']!r}")


def digest_of(spec: dict[str, Any]) -> Digest:
    """Hash the whole content (used for seeded images, whose checksums a cloud must know)."""
    hasher = Hasher()
    for piece in content_chunks(spec):
        hasher.update(piece)
    return hasher.digest()


class BlobWriter:
    """Writes an upload to a file while hashing it; hashing and disk writes run in a worker
    thread (hashlib and file I/O release the GIL) so the event loop keeps serving."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_suffix(".part")
        self.hasher = Hasher()
        self._fh = self.tmp.open("wb")
        self._pending: asyncio.Future[None] | None = None
        self._buf = bytearray()

    def _sink(self, data: bytes) -> None:
        self.hasher.update(data)
        self._fh.write(data)

    async def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= BLOCK:
            await self._flush_buf()

    async def _flush_buf(self) -> None:
        if self._pending is not None:
            await self._pending
            self._pending = None
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            loop = asyncio.get_running_loop()
            self._pending = loop.run_in_executor(None, self._sink, data)

    async def finish(self) -> Digest:
        await self._flush_buf()
        if self._pending is not None:
            await self._pending
            self._pending = None
        self._fh.close()
        self.tmp.replace(self.path)
        return self.hasher.digest()

    def abort(self) -> None:
        self._fh.close()
        self.tmp.unlink(missing_ok=True)

    def discard(self) -> None:
        """Abandon a broken upload: drop the file once the write in flight (if any) is done.

        Nothing is awaited, so a handler being cancelled (client gone) still cleans up."""
        pending, self._pending = self._pending, None
        if pending is None or pending.done():
            if pending is not None and not pending.cancelled():
                pending.exception()  # retrieved: a failed write is moot now
            self.abort()
            return

        def after_write(done: asyncio.Future[None]) -> None:
            if not done.cancelled():
                done.exception()
            self.abort()

        pending.add_done_callback(after_write)


async def iter_async(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Pull a blocking chunk iterator from a worker thread, one chunk ahead."""
    loop = asyncio.get_running_loop()
    sentinel = object()

    def pull() -> Any:
        return next(chunks, sentinel)

    nxt = loop.run_in_executor(None, pull)
    while True:
        piece = await nxt
        if piece is sentinel:
            return
        nxt = loop.run_in_executor(None, pull)
        yield piece
