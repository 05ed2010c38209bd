"""copy_image_data through openstacksdk connections against the simulator (legacy Liberty ->
modern): sizes, hashes checked on both sides, v1 source, faults on either side, retries left
to the caller, stop and the bandwidth cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import openstack
import pytest

from migrator.errors import MigratorError
from migrator.sim.server import SimServer
from migrator.transfer import (
    BandwidthLimiter,
    GlanceV1Reader,
    GlanceV2Reader,
    TransferError,
    TransferInterrupted,
    copy_image_data,
    verify_target_image,
)
from migrator.transfer.glance_io import SourceStream, default_reader
from tests.sim.conftest import Admin, connect
from tests.transfer.conftest import FILE_GET, FILE_PUT, PUT_ROUTE, MiB, Pair

PairFactory = Callable[..., Pair]
Conn = openstack.connection.Connection


def status_of(conn: Conn, image_id: str) -> str:
    return str(conn.image.get_image(image_id).status)


def assert_copied(sim: SimServer, target: Conn, pair: Pair) -> None:
    image = target.image.get_image(pair.target_id)
    assert image.status == "active"
    assert image.size == len(pair.data)
    assert image.checksum == pair.md5
    assert image.hash_algo == "sha512" and image.hash_value == pair.sha512
    assert sim.cloud("target").blob_path(pair.target_id).read_bytes() == pair.data


@pytest.mark.parametrize("size", [0, 1, MiB + 1, 5 * MiB + 12345])
def test_sizes_legacy_to_modern(sim: SimServer, legacy: Conn, target: Conn,
                                pair_factory: PairFactory, size: int) -> None:
    pair = pair_factory(size)
    assert pair.checksum == pair.md5  # the legacy checksum is the md5 (no multihash)
    seen: list[int] = []
    result = copy_image_data(legacy, pair.source_id, target, pair.target_id,
                             expected_md5=pair.checksum, expected_size=size,
                             progress=seen.append)
    assert (result.bytes, result.md5, result.sha512) == (size, pair.md5, pair.sha512)
    assert result.seconds > 0
    assert seen == sorted(seen) and (seen[-1] if seen else 0) == size
    if size > MiB:
        assert len(seen) == -(-size // MiB)  # one report per chunk sent
    assert_copied(sim, target, pair)


def test_source_without_data_answers_204(sim: SimServer, legacy: Conn, target: Conn,
                                         pair_factory: PairFactory) -> None:
    pair = pair_factory(None)
    assert status_of(legacy, pair.source_id) == "queued"
    result = copy_image_data(legacy, pair.source_id, target, pair.target_id)
    assert result.bytes == 0 and result.md5 == pair.md5
    assert_copied(sim, target, pair)


@pytest.mark.parametrize("hashing", ["inline", "thread", "split"])
def test_hashing_modes_agree(sim: SimServer, legacy: Conn, target: Conn,
                             pair_factory: PairFactory, hashing: str) -> None:
    pair = pair_factory(3 * MiB + 3)
    result = copy_image_data(legacy, pair.source_id, target, pair.target_id,
                             expected_md5=pair.checksum, hashing=hashing)
    assert (result.md5, result.sha512) == (pair.md5, pair.sha512)
    assert_copied(sim, target, pair)


def test_small_chunks_and_declared_size(sim: SimServer, legacy: Conn, target: Conn,
                                        pair_factory: PairFactory) -> None:
    pair = pair_factory(MiB + 17)
    seen: list[int] = []
    copy_image_data(legacy, pair.source_id, target, pair.target_id, chunk_size=64 * 1024,
                    progress=seen.append)
    assert len(seen) == 17 and seen[-1] == MiB + 17
    assert_copied(sim, target, pair)


def test_v1_reader(sim: SimServer, legacy: Conn, target: Conn, pair_factory: PairFactory,
                   admin_api: dict[str, Admin]) -> None:
    pair = pair_factory(2 * MiB + 5)
    admin_api["legacy"].reset_calls()
    result = copy_image_data(legacy, pair.source_id, target, pair.target_id,
                             expected_md5=pair.checksum, reader=GlanceV1Reader(legacy))
    assert result.md5 == pair.md5
    calls = admin_api["legacy"].calls()
    assert calls.get("GET /image/v1/images/{image_id}") == 1
    assert "GET /image/v2/images/{image_id}/file" not in calls
    assert_copied(sim, target, pair)


def test_v1_proxy_picks_the_v1_reader(sim: SimServer, target: Conn,
                                      pair_factory: PairFactory) -> None:
    """A source whose SDK image proxy is v1 (v2 disabled on a patched Liberty)."""
    v1 = connect(sim, "legacy", image_api_version="1")
    assert isinstance(default_reader(v1), GlanceV1Reader)
    assert isinstance(default_reader(target), GlanceV2Reader)
    pair = pair_factory(MiB + 3)
    assert copy_image_data(v1, pair.source_id, target, pair.target_id).md5 == pair.md5
    assert_copied(sim, target, pair)


@pytest.mark.parametrize("inventory_md5", [True, False])
def test_corrupted_byte_caught_then_retry(sim: SimServer, legacy: Conn, target: Conn,
                                          pair_factory: PairFactory,
                                          admin_api: dict[str, Admin],
                                          inventory_md5: bool) -> None:
    """Without the inventory's md5 the source's own Content-MD5 catches it."""
    pair = pair_factory(3 * MiB + 99)
    admin_api["legacy"].add_fault(match=FILE_GET, corrupt_offset=MiB + 5, times=1)
    expected = pair.checksum if inventory_md5 else None
    with pytest.raises(TransferError, match="md5 mismatch") as info:
        copy_image_data(legacy, pair.source_id, target, pair.target_id, expected_md5=expected)
    err = info.value
    assert err.retryable and err.target_status == "queued" and not err.needs_new_image
    assert pair.source_id in str(err) and "legacy" in str(err) and pair.md5 in str(err)
    assert status_of(target, pair.target_id) == "queued"  # the bad bytes never landed
    result = copy_image_data(legacy, pair.source_id, target, pair.target_id,
                             expected_md5=expected)
    assert result.md5 == pair.md5
    assert_copied(sim, target, pair)


def test_source_dropped_mid_stream(sim: SimServer, legacy: Conn, target: Conn,
                                   pair_factory: PairFactory,
                                   admin_api: dict[str, Admin]) -> None:
    pair = pair_factory(4 * MiB)
    admin_api["legacy"].add_fault(match=FILE_GET, drop_after_bytes=MiB + 100, times=1)
    with pytest.raises(TransferError) as info:
        copy_image_data(legacy, pair.source_id, target, pair.target_id,
                        expected_md5=pair.checksum)
    err = info.value
    assert err.retryable and err.target_status == "queued"
    assert "download of image" in str(err) and pair.source_id in str(err)
    assert status_of(target, pair.target_id) == "queued"
    copy_image_data(legacy, pair.source_id, target, pair.target_id, expected_md5=pair.checksum)
    assert_copied(sim, target, pair)


def test_target_dropped_mid_upload_not_resent(sim: SimServer, legacy: Conn, target: Conn,
                                              pair_factory: PairFactory,
                                              admin_api: dict[str, Admin]) -> None:
    pair = pair_factory(5 * MiB + 1)
    admin_api["target"].add_fault(match=FILE_PUT, drop_after_bytes=2 * MiB, times=1)
    admin_api["target"].reset_calls()
    with pytest.raises(TransferError) as info:
        copy_image_data(legacy, pair.source_id, target, pair.target_id,
                        expected_md5=pair.checksum)
    err = info.value
    assert err.retryable and err.target_status == "queued"
    assert pair.target_id in str(err) and "target" in str(err)
    assert admin_api["target"].calls().get(PUT_ROUTE) == 1  # keystoneauth did not re-send
    assert status_of(target, pair.target_id) == "queued"
    copy_image_data(legacy, pair.source_id, target, pair.target_id, expected_md5=pair.checksum)
    assert admin_api["target"].calls().get(PUT_ROUTE) == 2  # one PUT per attempt
    assert_copied(sim, target, pair)


def test_503_on_upload_not_retried_inside(sim: SimServer, legacy: Conn, target: Conn,
                                          pair_factory: PairFactory,
                                          admin_api: dict[str, Admin]) -> None:
    pair = pair_factory(2 * MiB + 1)
    admin_api["target"].add_fault(match=FILE_PUT, status=503, retry_after=0, times=1)
    admin_api["target"].reset_calls()
    with pytest.raises(TransferError, match="HTTP 503") as info:
        copy_image_data(legacy, pair.source_id, target, pair.target_id)
    err = info.value
    assert err.retryable and err.status_code == 503 and err.target_status == "queued"
    assert admin_api["target"].calls().get(PUT_ROUTE) == 1
    copy_image_data(legacy, pair.source_id, target, pair.target_id)
    assert admin_api["target"].calls().get(PUT_ROUTE) == 2
    assert_copied(sim, target, pair)


def test_target_not_queued_is_refused(sim: SimServer, legacy: Conn, target: Conn,
                                      pair_factory: PairFactory) -> None:
    pair = pair_factory(1000)
    copy_image_data(legacy, pair.source_id, target, pair.target_id)
    with pytest.raises(TransferError, match="is active, not queued") as info:
        copy_image_data(legacy, pair.source_id, target, pair.target_id)
    assert not info.value.retryable and info.value.needs_new_image
    assert isinstance(info.value, MigratorError)


def test_missing_source_image(legacy: Conn, target: Conn, pair_factory: PairFactory) -> None:
    pair = pair_factory(10)
    with pytest.raises(TransferError, match="HTTP 404") as info:
        copy_image_data(legacy, "0" * 32, target, pair.target_id)
    assert not info.value.retryable and info.value.status_code == 404
    assert status_of(target, pair.target_id) == "queued"


def test_size_changed_since_inventory(legacy: Conn, target: Conn,
                                      pair_factory: PairFactory) -> None:
    pair = pair_factory(MiB)
    with pytest.raises(TransferError, match="declares 1048576 bytes, the inventory says 5"
                       ) as info:
        copy_image_data(legacy, pair.source_id, target, pair.target_id, expected_size=5)
    assert not info.value.retryable
    assert status_of(target, pair.target_id) == "queued"


def test_stop_abandons_the_upload(sim: SimServer, legacy: Conn, target: Conn,
                                  pair_factory: PairFactory) -> None:
    pair = pair_factory(4 * MiB)
    stop = threading.Event()
    with pytest.raises(TransferInterrupted) as info:
        copy_image_data(legacy, pair.source_id, target, pair.target_id,
                        progress=lambda _: stop.set(), stop=stop)
    assert info.value.retryable and info.value.target_status == "queued"
    stop.clear()
    copy_image_data(legacy, pair.source_id, target, pair.target_id)
    assert_copied(sim, target, pair)


def test_verify_target_image_names_both_values(target: Conn, legacy: Conn,
                                               pair_factory: PairFactory) -> None:
    pair = pair_factory(4096)
    copy_image_data(legacy, pair.source_id, target, pair.target_id)
    record = verify_target_image(target, pair.target_id, size=4096, md5=pair.md5,
                                 sha512=pair.sha512)
    assert record["os_hash_value"] == pair.sha512
    with pytest.raises(TransferError, match="sha512 mismatch") as info:
        verify_target_image(target, pair.target_id, size=4096, md5=pair.md5, sha512="ab" * 64)
    assert pair.sha512 in str(info.value) and "ab" * 64 in str(info.value)
    assert info.value.needs_new_image
    with pytest.raises(TransferError, match="holds 4096 bytes, 4095 were sent"):
        verify_target_image(target, pair.target_id, size=4095, md5=pair.md5,
                            sha512=pair.sha512)


def test_bandwidth_limiter_paces_the_copy(sim: SimServer, legacy: Conn, target: Conn,
                                          pair_factory: PairFactory) -> None:
    pair = pair_factory(2 * MiB)
    limiter = BandwidthLimiter(4 * MiB)
    began = time.monotonic()
    copy_image_data(legacy, pair.source_id, target, pair.target_id, limiter=limiter)
    assert time.monotonic() - began >= 0.45
    assert_copied(sim, target, pair)


class DeclaringReader:
    """The v2 reader, but the source declares another size (or none: a chunked upload)."""

    def __init__(self, conn: Conn, shift: int | None) -> None:
        self.inner = GlanceV2Reader(conn)
        self.cloud = self.inner.cloud
        self.shift = shift

    def open(self, image_id: str, *, chunk_size: int, timeout: float) -> SourceStream:
        stream = self.inner.open(image_id, chunk_size=chunk_size, timeout=timeout)
        assert stream.size is not None
        stream.size = None if self.shift is None else stream.size + self.shift
        return stream


def test_undeclared_size_goes_chunked(sim: SimServer, legacy: Conn, target: Conn,
                                      pair_factory: PairFactory) -> None:
    pair = pair_factory(2 * MiB + 3)
    result = copy_image_data(legacy, pair.source_id, target, pair.target_id,
                             reader=DeclaringReader(legacy, None))
    assert result.bytes == len(pair.data)
    assert_copied(sim, target, pair)


@pytest.mark.parametrize(("shift", "message"), [
    (-1, "sent more than the 2097154 bytes it declared"),
    (1, "sent 2097155 bytes, it declared 2097156"),
])
def test_source_size_not_as_declared(sim: SimServer, legacy: Conn, target: Conn,
                                     pair_factory: PairFactory, shift: int,
                                     message: str) -> None:
    pair = pair_factory(2 * MiB + 3)
    with pytest.raises(TransferError, match=message) as info:
        copy_image_data(legacy, pair.source_id, target, pair.target_id,
                        reader=DeclaringReader(legacy, shift))
    assert info.value.retryable and info.value.target_status == "queued"
    assert status_of(target, pair.target_id) == "queued"
