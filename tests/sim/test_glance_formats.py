"""Image formats in the simulator: generated content whose header is that of its format
(recognised by migrator's detection and well-formed for Glance's inspector), the modern
Glance refusing bytes that do not match ``disk_format`` as Glance 33 does (an HTML 415, the
image left queued with its stored file, then 500 on every later upload until deleted), and
Liberty's ``Content-Range`` request header on a download."""

from __future__ import annotations

from typing import Any

import pytest

from migrator import disk_formats
from migrator.sim.content import GENERATED_FORMATS, generated_chunks
from migrator.sim.server import SimServer
from tests.sim.conftest import connect
from tests.sim.glance_seed import md5_hex, seed_image
from tests.sim.test_glance import image_url, raw

SIZES = (4096, 300_000, 1 << 20, (1 << 20) + 513)


def generated(fmt: str, size: int, seed: int = 3) -> bytes:
    return b"".join(generated_chunks(seed, size, 0, fmt))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("fmt", GENERATED_FORMATS)
def test_generated_content_carries_its_format(fmt: str, size: int) -> None:
    data = generated(fmt, size)
    assert len(data) == size
    # The same bytes whatever the offset a download starts at.
    assert b"".join(generated_chunks(3, size, 1000, fmt)) == data[1000:]
    head, tail = data[:disk_formats.HEAD_BYTES], data[-disk_formats.TAIL_BYTES:]
    expected = {"vhd-fixed": "vhd"}.get(fmt, fmt)
    if fmt == "iso" and size < 32 * 1024 + 2048:
        expected = "raw"  # no room for the volume descriptor
    assert disk_formats.detect(head, tail) == expected
    # Only the header differs from raw content of the same seed.
    if fmt == "raw":
        assert data == b"".join(generated_chunks(3, size))
    # What Glance's inspector sees (the stream from its start): a fixed VHD looks raw.
    seen = disk_formats.detect_head(head) or "raw"
    assert seen == ("raw" if fmt == "vhd-fixed" else expected)


def upload(conn: Any, sim: SimServer, image_id: str, data: bytes) -> Any:
    return raw(conn, "PUT", image_url(sim, "target", f"/{image_id}/file"), data=data,
               headers={"Content-Type": "application/octet-stream"})


def record(conn: Any, sim: SimServer, image_id: str) -> dict[str, Any]:
    return dict(raw(conn, "GET", image_url(sim, "target", f"/{image_id}")).json())


def test_modern_glance_refuses_mismatched_bytes_and_keeps_them(sim: SimServer) -> None:
    conn = connect(sim, "target")
    image = conn.image.create_image("labelled-qcow2", disk_format="qcow2",
                                    container_format="bare")
    data = generated("raw", 100_000)
    resp = upload(conn, sim, image.id, data)
    # Glance 33's answer names no cause: webob's page about the media type.
    assert resp.status_code == 415
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "The request media type application/octet-stream is not supported" in resp.text
    got = record(conn, sim, image.id)
    # Back to queued, with what storing had set, and the file still in the store.
    assert (got["status"], got["size"], got["checksum"]) == ("queued", len(data), md5_hex(data))
    assert got["os_hash_algo"] == "sha512" and got["os_hash_value"]
    assert sim.cloud("target").blob_path(image.id).exists()
    # Every later upload into that image fails, even with matching bytes: 500.
    good = generated("qcow2", 100_000)
    again = upload(conn, sim, image.id, good)
    assert again.status_code == 500
    assert "erred or is incapable" in again.text
    assert record(conn, sim, image.id)["status"] == "queued"
    # A download of it has no data; deleting it removes the stored file.
    assert raw(conn, "GET", image_url(sim, "target", f"/{image.id}/file")).status_code == 204
    assert raw(conn, "DELETE", image_url(sim, "target", f"/{image.id}")).status_code == 204
    assert not sim.cloud("target").blob_path(image.id).exists()
    # A new image takes the matching bytes.
    fresh = conn.image.create_image("labelled-qcow2", disk_format="qcow2",
                                    container_format="bare", allow_duplicates=True)
    assert upload(conn, sim, fresh.id, good).status_code == 204
    assert record(conn, sim, fresh.id)["status"] == "active"


@pytest.mark.parametrize(("label", "container", "content", "accepted"), [
    ("raw", "bare", "qcow2", True),       # a raw label lets anything through
    ("qcow2", "bare", "qcow2", True),
    ("vmdk", "bare", "vmdk", True),
    ("vhdx", "bare", "vhdx", True),
    ("vhd", "bare", "vhd", True),
    ("iso", "bare", "iso", True),
    ("vhd", "bare", "vhd-fixed", False),  # the footer at the end is not seen: raw
    ("iso", "bare", "raw", False),
    ("qcow2", "bare", "vmdk", False),
    ("ami", "ami", "raw", True),          # not a bare container: not inspected
    ("qcow2", "ovf", "raw", True),
])
def test_modern_format_verdicts(sim: SimServer, label: str, container: str, content: str,
                                accepted: bool) -> None:
    conn = connect(sim, "target")
    image = conn.image.create_image(f"verdict-{label}-{content}", disk_format=label,
                                    container_format=container, allow_duplicates=True)
    resp = upload(conn, sim, image.id, generated(content, 300_000))
    assert resp.status_code == (204 if accepted else 415), resp.text
    assert record(conn, sim, image.id)["status"] == ("active" if accepted else "queued")


def test_liberty_accepts_any_bytes(sim: SimServer) -> None:
    conn = connect(sim, "legacy")
    image = conn.image.create_image("liberty-mislabelled", disk_format="qcow2",
                                    container_format="bare")
    resp = raw(conn, "PUT", image_url(sim, "legacy", f"/{image.id}/file"),
               data=generated("raw", 50_000),
               headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 204


def test_liberty_reads_content_range_on_download(sim: SimServer) -> None:
    conn = connect(sim, "legacy")
    size = 70_000
    image = seed_image(sim, "legacy", name="liberty-ranged", size=size, seed=5,
                       disk_format="raw", container_format="bare")
    whole = generated("raw", size, seed=5)
    url = image_url(sim, "legacy", f"/{image['id']}/file")
    # Range is not read by Liberty: the whole image.
    plain = raw(conn, "GET", url, headers={"Range": "bytes=-512"})
    assert plain.status_code == 200 and plain.content == whole
    # Content-Range (webob's get_content_range) is: 200 with the bytes asked for.
    tail = raw(conn, "GET", url, headers={"Content-Range": f"bytes {size - 512}-{size - 1}/"
                                                          f"{size}"})
    assert tail.status_code == 200 and tail.content == whole[-512:]
