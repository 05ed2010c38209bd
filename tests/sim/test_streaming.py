"""Image bytes through openstacksdk against both profiles: uploads with Content-Length and
chunked, streamed downloads checked by the SDK's own hash check, and the faults that hit
bodies (corrupted byte, dropped connection, bandwidth) or requests (503 + Retry-After)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
import requests
from keystoneauth1 import exceptions as ks_exc

from migrator.sim.server import SimServer
from tests.sim.conftest import Admin, connect
from tests.sim.glance_seed import generated_bytes, md5_hex, seed_image
from tests.timing import scaled

CLOUDS = ["legacy", "target"]
MiB = 1 << 20
FILE_ROUTE = "GET /image/v2/images/*/file"


def pattern(size: int) -> bytes:
    """Bytes that differ from block to block, of any size."""
    block = hashlib.sha512(str(size).encode()).digest() * 16  # 1 KiB
    return (block * (size // len(block) + 1))[:size]


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def blobs_left(sim: SimServer, cloud: str) -> list[Path]:
    return sorted(sim.cloud(cloud).blob_dir.iterdir())


@pytest.mark.parametrize("cloud", CLOUDS)
def test_upload_from_file_with_content_length(sim: SimServer, cloud: str, tmp_path: Path
                                              ) -> None:
    data = pattern(3 * MiB + 12345)  # not a multiple of 1 MiB
    source = tmp_path / "disk.raw"
    source.write_bytes(data)
    conn = connect(sim, cloud)
    image = conn.image.create_image("from-file", filename=str(source), disk_format="raw",
                                    container_format="bare")
    assert image.status == "queued"  # the SDK hands back the object it created
    fresh = conn.image.get_image(image.id)
    assert fresh.status == "active" and fresh.size == len(data)
    assert fresh.checksum == md5_hex(data)
    if cloud == "target":
        assert fresh.hash_algo == "sha512"
        assert fresh.hash_value == hashlib.sha512(data).hexdigest()
    else:
        assert fresh.hash_algo is None and fresh.hash_value is None
    stored = sim.cloud(cloud).blob_path(image.id)
    assert stored.read_bytes() == data
    out = tmp_path / "back.raw"
    conn.image.download_image(fresh, stream=True, output=str(out))
    assert out.read_bytes() == data


@pytest.mark.parametrize("cloud", CLOUDS)
def test_upload_from_generator_is_chunked(sim: SimServer, cloud: str) -> None:
    data = pattern(2 * MiB + 777)
    conn = connect(sim, cloud)
    image = conn.image.create_image("from-generator", data=chunks_of(data, 65536),
                                    disk_format="raw", container_format="bare")
    fresh = conn.image.get_image(image.id)
    assert fresh.status == "active" and fresh.size == len(data)
    assert fresh.checksum == md5_hex(data)
    # Uploading again into an active image is a conflict (Image.upload returns the
    # response without raising; create_image raises from it).
    assert fresh.upload(conn.image, data=io.BytesIO(b"again")).status_code == 409


@pytest.mark.parametrize("cloud", CLOUDS)
def test_streamed_download_is_verified_by_the_sdk(sim: SimServer, cloud: str,
                                                  tmp_path: Path) -> None:
    size = 5 * MiB + 3
    seeded = seed_image(sim, cloud, name="seeded-download", size=size, seed=11)
    expected = generated_bytes(11, size)
    conn = connect(sim, cloud)
    out = tmp_path / "image.bin"
    conn.image.download_image(seeded["id"], stream=True, output=str(out))
    assert out.read_bytes() == expected
    # stream=True without output: the caller iterates and checks (the SDK does not).
    resp = conn.image.download_image(seeded["id"], stream=True)
    assert resp.headers["Content-Length"] == str(size)
    assert resp.headers["Content-MD5"] == md5_hex(expected)
    assert resp.headers["Content-Type"] == "application/octet-stream"
    hasher = hashlib.md5(usedforsecurity=False)
    for piece in resp.iter_content(MiB):
        hasher.update(piece)
    assert hasher.hexdigest() == md5_hex(expected)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_corrupted_byte_is_caught_by_the_sdk_hash_check(
    sim: SimServer, cloud: str, admin_api: dict[str, Admin], tmp_path: Path
) -> None:
    seeded = seed_image(sim, cloud, name="corrupt-me", size=2 * MiB, seed=12)
    conn = connect(sim, cloud)
    admin_api[cloud].add_fault(match=FILE_ROUTE, corrupt_offset=MiB + 5, times=1)
    with pytest.raises(openstack.exceptions.SDKException, match="checksum mismatch"):
        conn.image.download_image(seeded["id"], stream=True, output=str(tmp_path / "x"))
    # The fault fired once; the next download is clean.
    conn.image.download_image(seeded["id"], stream=True, output=str(tmp_path / "y"))
    assert (tmp_path / "y").read_bytes() == generated_bytes(12, 2 * MiB)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_dropped_connection_mid_download(sim: SimServer, cloud: str,
                                         admin_api: dict[str, Admin], tmp_path: Path) -> None:
    seeded = seed_image(sim, cloud, name="drop-download", size=3 * MiB, seed=13)
    conn = connect(sim, cloud)
    admin_api[cloud].add_fault(match=FILE_ROUTE, drop_after_bytes=MiB + 100, times=1)
    out = tmp_path / "partial"
    with pytest.raises(openstack.exceptions.SDKException, match="Unable to download"):
        conn.image.download_image(seeded["id"], stream=True, output=str(out))
    assert out.stat().st_size < 3 * MiB  # a partial file is left behind
    conn.image.download_image(seeded["id"], stream=True, output=str(out))
    assert out.stat().st_size == 3 * MiB


@pytest.mark.parametrize("cloud", CLOUDS)
def test_dropped_connection_mid_upload_leaves_image_queued(
    sim: SimServer, cloud: str, admin_api: dict[str, Admin]
) -> None:
    data = pattern(4 * MiB)
    conn = connect(sim, cloud)
    image = conn.image.create_image("drop-upload", disk_format="raw", container_format="bare")
    admin_api[cloud].add_fault(match="PUT /image/v2/images/*/file",
                               drop_after_bytes=2 * MiB, times=1)
    before = blobs_left(sim, cloud)
    # keystoneauth reports the reset as a ConnectFailure (and does not re-send).
    with pytest.raises(ks_exc.ConnectFailure):
        image.upload(conn.image, data=chunks_of(data, 256 * 1024))
    fresh = conn.image.get_image(image.id)
    assert fresh.status == "queued" and fresh.size is None and fresh.checksum is None
    deadline = time.monotonic() + scaled(5)
    while blobs_left(sim, cloud) != before and time.monotonic() < deadline:
        time.sleep(0.02)  # the server drops the partial blob once its last write is done
    assert blobs_left(sim, cloud) == before
    # The upload can be retried into the same image.
    response = image.upload(conn.image, data=io.BytesIO(data))
    assert response.status_code == 204
    fresh = conn.image.get_image(image.id)
    assert fresh.status == "active" and fresh.checksum == md5_hex(data)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_bandwidth_fault_slows_a_download(sim: SimServer, cloud: str,
                                          admin_api: dict[str, Admin]) -> None:
    size = 4 * MiB
    seeded = seed_image(sim, cloud, name="slow-download", size=size, seed=14)
    conn = connect(sim, cloud)

    def timed_download() -> float:
        started = time.monotonic()
        resp = conn.image.download_image(seeded["id"], stream=True)
        assert sum(len(p) for p in resp.iter_content(MiB)) == size
        return time.monotonic() - started

    fast = timed_download()
    admin_api[cloud].add_fault(match=FILE_ROUTE, bandwidth=2 * MiB, times=1)
    slow = timed_download()
    # 4 MiB at 2 MiB/s: the server sleeps after each 1 MiB block, so the last block
    # arrives after about a second and a half (a bound that only a throttle explains: an
    # unthrottled 4 MiB download takes milliseconds, seconds on the busiest machine).
    assert slow >= 1.45
    assert slow > fast


@pytest.mark.parametrize("cloud", CLOUDS)
def test_503_with_retry_after(sim: SimServer, cloud: str,
                              admin_api: dict[str, Admin]) -> None:
    seeded = seed_image(sim, cloud, name="busy", size=10, seed=15)
    url = f"{sim.cloud(cloud).base_url}/image/v2/images/{seeded['id']}"
    conn = connect(sim, cloud)
    token = conn.session.get_token()
    admin_api[cloud].add_fault(match="GET /image/v2/images/*", status=503, retry_after=1,
                               times=1)
    resp = requests.get(url, headers={"X-Auth-Token": token}, timeout=10)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    assert requests.get(url, headers={"X-Auth-Token": token}, timeout=10).status_code == 200
    # The SDK's image adapter retries 503 itself (image_status_code_retries=5), sleeping
    # for the Retry-After it was given.
    admin_api[cloud].add_fault(match="GET /image/v2/images/*", status=503, retry_after=1,
                               times=1)
    admin_api[cloud].reset_calls()
    started = time.monotonic()
    assert conn.image.get_image(seeded["id"]).name == "busy"
    assert time.monotonic() - started >= 1.0
    assert admin_api[cloud].calls()["GET /image/v2/images/{image_id}"] == 2


@pytest.mark.parametrize("cloud", CLOUDS)
def test_zero_byte_image(sim: SimServer, cloud: str, tmp_path: Path) -> None:
    conn = connect(sim, cloud)
    image = conn.image.create_image("empty", disk_format="raw", container_format="bare")
    # No data yet: Glance answers 204 and the SDK does not raise.
    assert conn.image.download_image(image.id, stream=True).status_code == 204
    assert image.upload(conn.image, data=io.BytesIO(b"")).status_code == 204
    fresh = conn.image.get_image(image.id)
    assert fresh.status == "active" and fresh.size == 0
    assert fresh.checksum == md5_hex(b"")
    out = tmp_path / "empty"
    resp = conn.image.download_image(image.id, stream=True, output=str(out))
    assert resp.status_code == 200 and out.read_bytes() == b""


def test_range_download_on_modern_only(sim: SimServer) -> None:
    size = 2 * MiB + 10
    expected = generated_bytes(16, size)
    for cloud in CLOUDS:
        seeded = seed_image(sim, cloud, name="ranged", size=size, seed=16)
        conn = connect(sim, cloud)
        url = f"{sim.cloud(cloud).base_url}/image/v2/images/{seeded['id']}/file"
        resp = conn.session.get(url, headers={"Range": f"bytes={MiB}-{MiB + 99}"})
        if cloud == "target":
            assert resp.status_code == 206
            assert resp.content == expected[MiB:MiB + 100]
            assert resp.headers["Content-Range"] == f"bytes {MiB}-{MiB + 99}/{size}"
            tail = conn.session.get(url, headers={"Range": "bytes=-10"})
            assert tail.content == expected[-10:]
            bad = conn.session.get(url, headers={"Range": f"bytes={size}-"},
                                   raise_exc=False)
            assert bad.status_code == 416
        else:
            assert resp.status_code == 200 and resp.content == expected


@pytest.mark.parametrize("cloud", CLOUDS)
def test_create_image_deletes_its_image_when_the_upload_breaks(
    sim: SimServer, cloud: str, admin_api: dict[str, Admin]
) -> None:
    conn = connect(sim, cloud)
    admin_api[cloud].add_fault(match="PUT /image/v2/images/*/file", drop_after_bytes=MiB,
                               times=1)
    admin_api[cloud].reset_calls()
    with pytest.raises(openstack.exceptions.SDKException, match="Image creation failed"):
        conn.image.create_image("broken-create", data=chunks_of(pattern(3 * MiB), MiB),
                                disk_format="raw", container_format="bare")
    # The SDK cleans up after itself: the queued image is deleted, nothing is left.
    assert admin_api[cloud].calls()["DELETE /image/v2/images/{image_id}"] == 1
    assert conn.image.find_image("broken-create") is None
