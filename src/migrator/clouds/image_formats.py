"""Reading what an image's bytes really are at discovery: its first bytes (one ranged GET)
and, only when they show no format, its last 512 (a second one: a fixed VHD's footer).

Liberty's Glance ignores ``Range`` and reads a ``Content-Range`` request header instead
(webob's ``get_content_range``, answering 200 with the range); modern Glance reads ``Range``
(206). Both headers are sent; whatever the answer, at most the bytes wanted are read and the
connection is closed, so a server that ignores both sends its whole image to a reader that
stops after the head. A tail answer that repeats the head (a server ignoring both headers)
tells nothing: the format is then what the head showed (``raw``), noted as such.

The result is recorded in the image's inventory attributes (``content_format``, and
``content_format_note`` when the bytes could not be read or the tail not reached), so a
re-plan never reads again; discovery reuses the previous snapshot's result for an image whose
id, size and checksum did not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from migrator.disk_formats import HEAD_BYTES, TAIL_BYTES, detect_head, detect_tail

# An image is probed when it is active and holds bytes.
PROBED_STATUSES = frozenset({"active"})
ATTEMPTS = 2  # a dropped connection or a 5xx gets one more try
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
FORMAT_KEY = "content_format"
NOTE_KEY = "content_format_note"
FIXED_VHD = ("a fixed VHD (its footer only at the end): a format check that reads from the "
             "start, as Glance's does, sees raw")


@dataclass(frozen=True)
class Probe:
    format: str | None  # None: the bytes could not be read
    note: str | None = None

    def record(self, attributes: dict[str, Any]) -> None:
        attributes[FORMAT_KEY] = self.format
        if self.note:
            attributes[NOTE_KEY] = self.note
        else:
            attributes.pop(NOTE_KEY, None)


def wants_probe(attributes: Mapping[str, Any]) -> bool:
    size = attributes.get("size")
    return attributes.get("status") in PROBED_STATUSES and isinstance(size, int) and size > 0


def known_probe(attributes: Mapping[str, Any], previous: Mapping[str, Any] | None
                ) -> Probe | None:
    """The previous snapshot's result for the same bytes (same size and checksum), if any."""
    if previous is None or FORMAT_KEY not in previous:
        return None
    same = all(previous.get(k) == attributes.get(k) for k in ("size", "checksum"))
    if not same or not attributes.get("checksum") or previous.get(FORMAT_KEY) is None:
        return None
    return Probe(previous.get(FORMAT_KEY), previous.get(NOTE_KEY))


class _Unreadable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_range(image: Any, image_id: str, first: int, last: int, size: int, limit: int,
                timeout: float) -> tuple[int, bytes]:
    """(status, at most ``limit`` bytes) of a ranged download; the connection is closed
    after them whatever the server sent."""
    headers = {"Range": f"bytes={first}-{last}", "Content-Range": f"bytes {first}-{last}/{size}"}
    error = "no answer"
    for _attempt in range(ATTEMPTS):
        try:
            resp = image.get(f"images/{image_id}/file", headers=headers, stream=True,
                             raise_exc=False, timeout=timeout)
        except (ksa_exc.ConnectionError, ksa_exc.ClientException, sdk_exc.SDKException,
                OSError) as exc:
            error = type(exc).__name__
            continue
        try:
            if resp.status_code in RETRY_STATUSES:
                error = f"HTTP {resp.status_code}"
                continue
            if resp.status_code not in (200, 206):
                raise _Unreadable(f"HTTP {resp.status_code}")
            data = bytearray()
            for piece in resp.iter_content(min(limit, 65536)):
                data += piece
                if len(data) >= limit:
                    break
            return resp.status_code, bytes(data[:limit])
        except (ksa_exc.ConnectionError, OSError) as exc:
            error = type(exc).__name__
        except _Unreadable:
            raise
        except Exception as exc:  # requests' own errors mid-body (ChunkedEncodingError...)
            error = type(exc).__name__
        finally:
            resp.close()
    raise _Unreadable(error)


def probe_image(image: Any, image_id: str, size: int, timeout: float = 60.0) -> Probe:
    """What the bytes of ``image_id`` (``size`` bytes) are, through the image proxy ``image``
    of a connection allowed to download it."""
    head_len = min(HEAD_BYTES, size)
    try:
        _status, head = _read_range(image, image_id, 0, head_len - 1, size, head_len, timeout)
    except _Unreadable as exc:
        return Probe(None, f"the first bytes could not be read: {exc.reason}")
    found = detect_head(head)
    if found:
        return Probe(found)
    if size <= len(head):  # the whole image was read: its tail too
        return Probe("vhd", FIXED_VHD) if detect_tail(head) else Probe("raw")
    if len(head) < head_len:
        return Probe("raw", f"the download ended after {len(head)} bytes of the head")
    first = size - TAIL_BYTES
    try:
        status, tail = _read_range(image, image_id, first, size - 1, size, TAIL_BYTES, timeout)
    except _Unreadable as exc:
        return Probe("raw", f"the last bytes could not be read ({exc.reason}): a fixed VHD "
                            "would not be recognised")
    if status == 200 and tail == head[:len(tail)]:
        return Probe("raw", "the server ignored the range of the last bytes: a fixed VHD "
                            "would not be recognised")
    if detect_tail(tail):
        return Probe("vhd", FIXED_VHD)
    return Probe("raw")
