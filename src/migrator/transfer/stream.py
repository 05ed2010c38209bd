"""One image's bytes from a source Glance to a target Glance: streamed, hashed, verified.

The pipeline (memory bounded by ``QUEUE_DEPTH`` chunks, whatever the image size)::

    reader thread ── chunks ──> bounded queue ──> uploader (the caller's thread: the request
    (socket reads,                                 body generator, socket writes)
     bandwidth cap)                                   └──> hasher thread (md5 + sha512)

The uploader holds the last chunk back until the source is exhausted and the hashes are final:
a short, long or corrupted source (md5 against the legacy checksum) aborts the upload before
the target has every byte, so the target image goes back to ``queued`` and a retry uploads
into the same image. After the upload the target image is read again: ``active``, the size
sent, ``os_hash_value`` equal to our sha512 (when the target has multihash) and ``checksum``
equal to our md5.

Nothing here retries: the step that calls :func:`copy_image_data` does, on a
``TransferError`` with ``retryable`` set (and a new target image when ``needs_new_image``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.transfer.errors import TransferError, TransferInterrupted
from migrator.transfer.glance_io import (
    CloudLike,
    ImageReader,
    SourceStream,
    cloud_name,
    default_reader,
    get_image_record,
    status_error,
    upload,
)
from migrator.transfer.hashing import Digests, make_hasher
from migrator.transfer.limits import BandwidthLimiter

log = logging.getLogger(__name__)

MiB = 1 << 20
QUEUE_DEPTH = 4  # chunks read ahead of the upload
# Hashing in one worker thread overlaps it with the socket writes: faster than inline, equal
# to a thread per hash on the project's 2-core host (benchmarks/notes/transfer.md).
HASH_MODE = "thread"
# A stream no bigger than this is hashed in the copying thread whatever the mode: for a small
# image, starting a hashing thread (and waiting for it to run) costs more CPU than the hashes.
INLINE_HASH_UP_TO = 4 * MiB
SETTLE_S = 5.0  # how long a broken upload may take to put the target image back to queued
POLL_S = 0.2

_EOF = object()


@dataclass(frozen=True)
class TransferResult:
    bytes: int
    md5: str
    sha512: str
    seconds: float
    # The target image's record as read after the upload (active, these bytes).
    record: dict[str, Any] | None = None


class _Abort(Exception):
    """Raised inside the request body to abort the upload; carries the real reason."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Pipeline:
    def __init__(self, stream: SourceStream, *, declared: int | None,
                 expected_size: int | None, expected_md5: str | None,
                 limiter: BandwidthLimiter | None, progress: Callable[[int], None] | None,
                 stop: threading.Event | None, hashing: str, names: dict[str, str]) -> None:
        self.stream = stream
        self.declared = declared
        self.expected_size = expected_size
        self.expected_md5 = expected_md5.lower() if expected_md5 else None
        self.limiter = limiter
        self.progress = progress
        self.stop = stop
        self.names = names
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.cancel = threading.Event()
        small = declared is not None and declared <= INLINE_HASH_UP_TO
        self.hasher = make_hasher("inline" if small and hashing == "thread" else hashing)
        self.received = 0
        self.sent = 0
        self.digests: Digests | None = None
        self.thread = threading.Thread(target=self._read, name="transfer-reader", daemon=True)

    # -- reader thread ----------------------------------------------------------------------
    def _read(self) -> None:
        try:
            for piece in self.stream.chunks:
                if self.limiter is not None and not self.limiter.acquire(len(piece),
                                                                         self.cancel):
                    return
                if not self._put(piece):
                    return
            self._put(_EOF)
        except BaseException as exc:  # handed to the uploader, which raises it
            self._put(exc)

    def _put(self, item: Any) -> bool:
        while not self.cancel.is_set():
            try:
                self.queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    # -- uploader (request body) ------------------------------------------------------------
    def _get(self) -> Any:
        while True:
            if self.stop is not None and self.stop.is_set():
                raise TransferInterrupted(f"copy of {self.names['source']} to "
                                          f"{self.names['target']} stopped")
            try:
                return self.queue.get(timeout=POLL_S)
            except queue.Empty:
                continue

    def body(self) -> Iterator[bytes]:
        try:
            held: bytes | None = None
            while True:
                item = self._get()
                if item is _EOF:
                    break
                if isinstance(item, BaseException):
                    raise item
                self.hasher.update(item)
                self.received += len(item)
                if self.declared is not None and self.received > self.declared:
                    raise self._mismatch("sent more than the", f"{self.declared} bytes",
                                         "it declared")
                if held is not None:
                    yield held
                    self._sent(len(held))
                held = item
            self.digests = self.hasher.finish()
            self._check_source(self.digests)
            if held is not None:  # the last bytes go only once everything checked out
                yield held
                self._sent(len(held))
        except GeneratorExit:
            raise
        except BaseException as exc:
            raise _Abort(exc) from exc

    def _sent(self, n: int) -> None:
        self.sent += n
        if self.progress is not None:
            self.progress(self.sent)

    def _mismatch(self, verb: str, value: str, detail: str) -> TransferError:
        return TransferError(f"source {self.names['source']} {verb} {value} {detail}",
                             retryable=True)

    def _check_source(self, digests: Digests) -> None:
        src = self.names["source"]
        if self.declared is not None and digests.size != self.declared:
            raise TransferError(f"source {src} sent {digests.size} bytes, it declared "
                                f"{self.declared}", retryable=True)
        if self.expected_size is not None and digests.size != self.expected_size:
            raise TransferError(f"source {src} sent {digests.size} bytes, expected "
                                f"{self.expected_size}", retryable=True)
        if self.expected_md5 is not None and digests.md5 != self.expected_md5:
            raise TransferError(f"md5 mismatch on {src}: expected {self.expected_md5} (the "
                                f"legacy checksum), got {digests.md5}", retryable=True)
        declared_md5 = (self.stream.checksum or "").lower()
        if declared_md5 and digests.md5 != declared_md5:
            raise TransferError(f"md5 mismatch on {src}: the source declared {declared_md5}, "
                                f"got {digests.md5}", retryable=True)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.cancel.set()
        self.stream.close()
        self.thread.join(10)
        self.hasher.close()


def copy_image_data(
    source: CloudLike,
    source_image_id: str,
    target: CloudLike,
    target_image_id: str,
    *,
    expected_md5: str | None = None,
    expected_size: int | None = None,
    chunk_size: int = MiB,
    limiter: BandwidthLimiter | None = None,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    timeout: float = 300.0,
    reader: ImageReader | None = None,
    hashing: str = HASH_MODE,
    record: Mapping[str, Any] | None = None,
) -> TransferResult:
    """Stream an image's bytes from ``source`` into the ``queued`` image ``target_image_id``.

    ``expected_md5``/``expected_size`` come from the inventory (the legacy checksum and size);
    the md5 the source declares on the download is checked too. ``reader`` overrides how the
    source is read (default: Glance v2, or v1 when the source's image proxy is v1). ``timeout``
    is the socket timeout of every request. ``progress`` gets the bytes sent so far, from the
    calling thread. Setting ``stop`` abandons the transfer (TransferInterrupted).

    ``record``: the target image's record as the caller just created or read it, instead of
    reading it again to check that it is ``queued``.

    Raises TransferError (``retryable``, ``target_status``); never retries by itself.
    """
    began = time.monotonic()
    src_reader = reader if reader is not None else default_reader(source)
    names = {
        "source": f"image {source_image_id} on cloud {src_reader.cloud}",
        "target": f"image {target_image_id} on cloud {cloud_name(target)}",
    }
    if record is None or str(record.get("id")) != target_image_id:
        record = get_image_record(target, target_image_id, timeout)
    status = str(record.get("status"))
    if status != "queued":
        raise TransferError(f"target {names['target']} is {status}, not queued: it cannot "
                            "take an upload", retryable=False, target_status=status)
    if stop is not None and stop.is_set():
        raise TransferInterrupted(f"copy of {names['source']} stopped before it began",
                                  target_status=status)
    stream = src_reader.open(source_image_id, chunk_size=chunk_size, timeout=timeout)
    pipeline: _Pipeline | None = None
    try:
        if (expected_size is not None and stream.size is not None
                and stream.size != expected_size):
            raise TransferError(f"source {names['source']} declares {stream.size} bytes, "
                                f"the inventory says {expected_size}: it changed",
                                retryable=False)
        declared = stream.size if stream.size is not None else expected_size
        pipeline = _Pipeline(stream, declared=declared, expected_size=expected_size,
                             expected_md5=expected_md5, limiter=limiter, progress=progress,
                             stop=stop, hashing=hashing, names=names)
        pipeline.start()
        try:
            resp = upload(target, target_image_id, pipeline.body(), declared, timeout)
        except _Abort as abort:
            raise _settled(abort.error, target, target_image_id, timeout) from abort.error
        except TransferError as exc:
            raise _settled(exc, target, target_image_id, timeout) from exc
        if resp.status_code not in (200, 201, 204):
            raise _settled(status_error(f"upload of {names['target']}", resp), target,
                           target_image_id, timeout)
        digests = pipeline.digests
        if digests is None or pipeline.sent != digests.size:
            raise _settled(TransferError(
                f"upload of {names['target']} answered {resp.status_code} after "
                f"{pipeline.sent} bytes, before the whole body was sent", retryable=True),
                target, target_image_id, timeout)
    finally:
        if pipeline is not None:
            pipeline.close()
        else:
            stream.close()
    final = verify_target_image(target, target_image_id, size=digests.size, md5=digests.md5,
                                sha512=digests.sha512, timeout=timeout)
    return TransferResult(digests.size, digests.md5, digests.sha512, time.monotonic() - began,
                          final)


def _settled(error: BaseException, target: CloudLike, image_id: str, timeout: float
             ) -> BaseException:
    """The error, with the target image's status once a broken upload has been undone."""
    if not isinstance(error, TransferError):
        return error
    deadline = time.monotonic() + SETTLE_S
    status: str | None = None
    while True:
        try:
            status = str(get_image_record(target, image_id, timeout).get("status"))
        except TransferError:
            break
        if status != "saving" or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    error.target_status = status
    return error


def verify_target_image(target: CloudLike, image_id: str, *, size: int, md5: str,
                        sha512: str, timeout: float = 300.0,
                        wait_s: float = 60.0) -> dict[str, Any]:
    """Check that the target image is active and holds exactly these bytes (size, the
    multihash when it is sha512, the md5 checksum); return its record. Also usable by a step
    that finds an already active image after a crash (adopt it or not)."""
    what = f"target image {image_id} on cloud {cloud_name(target)}"
    deadline = time.monotonic() + wait_s
    record = get_image_record(target, image_id, timeout)
    while record.get("status") == "saving" and time.monotonic() < deadline:
        time.sleep(POLL_S)
        record = get_image_record(target, image_id, timeout)
    status = str(record.get("status"))

    def fail(message: str) -> TransferError:
        return TransferError(f"{what}: {message}", retryable=True, target_status=status)

    if status != "active":
        raise fail(f"{status} after the upload, not active")
    if record.get("size") != size:
        raise fail(f"holds {record.get('size')} bytes, {size} were sent")
    checked = False
    algo, value = record.get("os_hash_algo"), record.get("os_hash_value")
    if value and algo == "sha512":
        if str(value).lower() != sha512:
            raise fail(f"sha512 mismatch: target {value}, sent {sha512}")
        checked = True
    checksum = record.get("checksum")
    if checksum:
        if str(checksum).lower() != md5:
            raise fail(f"md5 mismatch: target {checksum}, sent {md5}")
        checked = True
    if not checked:
        log.warning("%s has no checksum to compare (os_hash_algo %s): size checked only",
                    what, algo)
    return record
