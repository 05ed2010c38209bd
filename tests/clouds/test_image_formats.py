"""Discovery reads what each image's bytes are (clouds/image_formats.py) against the Liberty
simulator: one ranged GET of the head per image, a second of the last 512 bytes only when the
head shows no format (Liberty reads it from ``Content-Range``), nothing again for an image
whose bytes did not change since the previous snapshot; an image it may not download is
noted, not fatal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.clouds.connection import open_cloud
from migrator.clouds.image_formats import FIXED_VHD, probe_image
from migrator.clouds.source import LegacySource, ReadResult
from migrator.sim.server import CloudSpec, SimServer
from tests.clouds.legacy_sim import SimAdmin

FILE = "GET /image/v2/images/{image_id}/file"
# name -> (disk_format label, generated format, size, expected content_format)
IMAGES: dict[str, tuple[str, str, int, str]] = {
    "q": ("qcow2", "qcow2", 100_000, "qcow2"),
    "vmdk": ("vmdk", "vmdk", 100_000, "vmdk"),
    "vhdx": ("vhdx", "vhdx", 300_000, "vhdx"),
    "vhd-dynamic": ("vhd", "vhd", 100_000, "vhd"),
    "vhd-fixed": ("vhd", "vhd-fixed", 100_000, "vhd"),
    "small-fixed": ("vhd", "vhd-fixed", 20_000, "vhd"),  # the head read is the whole image
    "cd": ("iso", "iso", 100_000, "iso"),
    "disk": ("raw", "raw", 100_000, "raw"),
    "raw-labelled-qcow2": ("qcow2", "raw", 100_000, "raw"),
    "qcow2-labelled-raw": ("raw", "qcow2", 100_000, "qcow2"),
    "empty": ("qcow2", "raw", 0, "raw"),
}
TAIL_READS = {"vhd-fixed", "disk", "raw-labelled-qcow2"}


def seed_doc() -> dict[str, Any]:
    images = [{"name": name, "disk_format": label, "container_format": "bare",
               "content": {"generated": {"size": size, "seed": i, "format": fmt}}}
              for i, (name, (label, fmt, size, _)) in enumerate(IMAGES.items())]
    # A copy of "q" (same bytes: same md5 and size) in the same tenant: read once for both.
    images.append({**images[0], "name": "q-copy"})
    return {"clouds": {"legacy": {"tenants": [{"name": "physics", "images": images}]}}}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    root = tmp_path_factory.mktemp("formats")
    (root / "seed.json").write_text(json.dumps(seed_doc()))
    server = SimServer([CloudSpec("legacy", "liberty")], root / "sim",
                       seed=root / "seed.json").start()
    yield server
    server.stop()


def images(result: ReadResult) -> dict[str, dict[str, Any]]:
    return {str(i.name): i.attributes for i in result.items if i.kind == "image"}


def test_each_image_is_read_once_and_its_format_recorded(sim: SimServer) -> None:
    api = SimAdmin(sim)
    api.reset_calls()
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    try:
        result = LegacySource(handle).read()
    finally:
        handle.close()
    found = images(result)
    for name, (_label, _fmt, _size, expected) in IMAGES.items():
        assert found[name]["content_format"] == expected, name
    assert found["vhd-fixed"]["content_format_note"] == FIXED_VHD
    assert found["small-fixed"]["content_format_note"] == FIXED_VHD
    assert found["empty"]["content_format_note"] == "no bytes"
    assert found["q-copy"]["content_format"] == "qcow2"
    assert "content_format_note" not in found["q"]
    # A head per image with bytes (q-copy shares q's), a tail only where the head showed no
    # format.
    with_bytes = sum(1 for _l, _f, size, _e in IMAGES.values() if size)
    assert api.calls()[FILE] == with_bytes + len(TAIL_READS)
    # Again, knowing the previous snapshot: nothing is read, the results are kept; an image
    # whose bytes changed (another checksum) is read again.
    known = {i.source_id: dict(i.attributes) for i in result.items if i.kind == "image"}
    changed = next(i.source_id for i in result.items if i.name == "q")
    known[changed]["checksum"] = "0" * 32
    api.reset_calls()
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    try:
        again = LegacySource(handle, known_images=known).read()
    finally:
        handle.close()
    assert api.calls().get(FILE) == 1
    assert images(again) == found


def test_unreadable_bytes_are_noted_not_fatal(sim: SimServer) -> None:
    admin = SimAdmin(sim)
    target = next(i for i in sim.cloud("legacy").state.values("images") if i["name"] == "cd")
    admin.add_fault(match=f"GET /image/v2/images/{target['id']}/file", status=403, times=99)
    try:
        handle = open_cloud("legacy", config_file=sim.clouds_yaml)
        try:
            result = LegacySource(handle).read()
        finally:
            handle.close()
    finally:
        admin.clear_faults()
    cd = images(result)["cd"]
    assert cd["content_format"] is None
    assert cd["content_format_note"] == "the first bytes could not be read: HTTP 403"


def test_a_server_ignoring_ranges_is_read_no_further_than_the_head(sim: SimServer,
                                                                  tmp_path: Path) -> None:
    # A proxy that drops both range headers: the head is the start of the whole image, the
    # "tail" repeats it, so the format stays raw with a note (a fixed VHD is not seen).
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    try:
        image = handle.proxy("image")
        fixed = next(i for i in sim.cloud("legacy").state.values("images")
                     if i["name"] == "vhd-fixed")

        class NoRanges:
            def get(self, path: str, *, headers: dict[str, str], **kwargs: Any) -> Any:
                return image.get(path, **kwargs)

        probe = probe_image(NoRanges(), fixed["id"], fixed["size"])
    finally:
        handle.close()
    assert probe.format == "raw"
    assert probe.note is not None and "ignored the range" in probe.note
