"""md5 (the legacy Glance checksum) and sha512 (the modern multihash) of a stream, fed chunk by
chunk, either in the caller's thread or in worker threads.

hashlib releases the GIL while it hashes a buffer bigger than 2 KiB, so a worker thread hashes
a 1 MiB chunk while the caller's thread sends the previous one on a socket. ``ThreadedHasher``
runs one thread for both hashes, or one per hash (``split=True``) when there are cores to
spare; its queues are bounded, so a slow hasher slows the stream down instead of buffering it.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass
from typing import Any

ALGORITHMS = ("md5", "sha512")


@dataclass(frozen=True)
class Digests:
    size: int
    md5: str
    sha512: str


def _new(name: str) -> Any:
    if name == "md5":
        return hashlib.md5(usedforsecurity=False)
    return hashlib.new(name)


class StreamHasher:
    """Both hashes, updated in the calling thread."""

    def __init__(self) -> None:
        self._hashes = {name: _new(name) for name in ALGORITHMS}
        self.size = 0

    def update(self, data: bytes) -> None:
        for h in self._hashes.values():
            h.update(data)
        self.size += len(data)

    def finish(self) -> Digests:
        return Digests(self.size, self._hashes["md5"].hexdigest(),
                       self._hashes["sha512"].hexdigest())

    def close(self) -> None:
        """Nothing to stop (the threaded hasher's counterpart)."""


_DONE = object()


class _Worker:
    def __init__(self, names: tuple[str, ...], depth: int) -> None:
        self.hashes = {name: _new(name) for name in names}
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name=f"hash-{'+'.join(names)}",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        hashes = list(self.hashes.values())
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            for h in hashes:
                h.update(item)


class ThreadedHasher:
    """Both hashes computed in one worker thread, or in one thread each (``split``).

    ``update`` blocks when a worker already has ``depth`` chunks waiting. ``finish`` waits for
    the workers to drain and returns the digests; ``close`` stops them without a result (on
    an aborted transfer). Chunks must not be modified after ``update`` (``bytes`` are not).
    """

    def __init__(self, *, split: bool = False, depth: int = 4) -> None:
        groups = [(name,) for name in ALGORITHMS] if split else [ALGORITHMS]
        self._workers = [_Worker(group, depth) for group in groups]
        self.size = 0
        self._closed = False

    def update(self, data: bytes) -> None:
        for worker in self._workers:
            worker.queue.put(data)
        self.size += len(data)

    def finish(self) -> Digests:
        self._stop()
        hashes: dict[str, Any] = {}
        for worker in self._workers:
            hashes.update(worker.hashes)
        return Digests(self.size, hashes["md5"].hexdigest(), hashes["sha512"].hexdigest())

    def close(self) -> None:
        if self._closed:
            return
        for worker in self._workers:
            # Drop what is waiting so the stop marker fits in the bounded queue.
            while True:
                try:
                    worker.queue.get_nowait()
                except queue.Empty:
                    break
        self._stop()

    def _stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.queue.put(_DONE)
        for worker in self._workers:
            worker.thread.join()


def make_hasher(mode: str) -> StreamHasher | ThreadedHasher:
    """``inline`` (caller's thread), ``thread`` (one worker) or ``split`` (one per hash)."""
    if mode == "inline":
        return StreamHasher()
    if mode == "thread":
        return ThreadedHasher()
    if mode == "split":
        return ThreadedHasher(split=True)
    raise ValueError(f"unknown hashing mode {mode!r} (inline, thread or split)")
