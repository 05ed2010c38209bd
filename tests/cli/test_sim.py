"""``migrator sim seed`` and ``migrator sim serve``: outputs, errors, a served cloud that
openstacksdk reaches through the written clouds.yaml, and state kept across a restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import openstack
import yaml

from tests.cli.conftest import Invoke
from tests.timing import scaled


def test_seed_writes_a_loadable_file(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "seed.yaml"
    result = invoke("sim", "seed", "--tenants", "2", "--images-per-tenant", "1",
                    "--image-size", "64KiB", "--servers-per-tenant", "4", "-o", str(out))
    assert result.exit_code == 0, result.output
    # Each tenant's second server boots from a volume and has a data volume: 2 more each.
    assert result.output == (f"wrote {out}: 2 tenants, 2 images, 8 volumes, 4 networks, "
                             "8 servers\n")
    doc = yaml.safe_load(out.read_text())
    tenants = [t["name"] for t in doc["clouds"]["legacy"]["tenants"]]
    assert tenants == ["admin", "physics", "chemistry"]
    image = doc["clouds"]["legacy"]["tenants"][1]["images"][0]
    assert image["content"]["generated"]["size"] == 65536


def test_seed_mislabels_the_last_images(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "seed.yaml"
    result = invoke("sim", "seed", "--tenants", "2", "--mislabelled", "3", "-o", str(out))
    assert result.exit_code == 0, result.output
    images = [i for t in yaml.safe_load(out.read_text())["clouds"]["legacy"]["tenants"]
              for i in t.get("images") or []]
    # (label, the format of the bytes: none given is the label's own), the last 3 wrong
    got = [(i["disk_format"], i["content"]["generated"].get("format")) for i in images]
    assert got == [("qcow2", None), ("qcow2", "raw"), ("raw", "qcow2"), ("qcow2", "raw")]


def test_seed_json_output(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "seed.json"
    result = invoke("sim", "seed", "--tenants", "1", "--servers-per-tenant", "4", "-o",
                    str(out), "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {"output": str(out), "tenants": 1, "images": 2,
                                         "volumes": 4, "networks": 3, "servers": 4}
    assert json.loads(out.read_text())["clouds"]["legacy"]["tenants"][1]["name"] == "physics"


def test_seed_with_four_servers_per_tenant_by_default(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "seed.json"
    result = invoke("sim", "seed", "--tenants", "1", "-o", str(out), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["servers"] == 4
    servers = json.loads(out.read_text())["clouds"]["legacy"]["tenants"][1]["servers"]
    assert len(servers) == 4
    none = invoke("sim", "seed", "--tenants", "1", "--servers-per-tenant", "0", "-o",
                  str(tmp_path / "none.json"), "--format", "json")
    assert json.loads(none.output)["servers"] == 0
    assert json.loads(none.output)["volumes"] == 2


def test_bad_size_is_one_line(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("sim", "seed", "--image-size", "lots", "-o", str(tmp_path / "s.yaml"))
    assert result.exit_code == 2
    assert result.output == ("Error: --image-size: 'lots' is not a size "
                             "(examples: 512, 4MiB, 2GiB)\n")
    assert not (tmp_path / "s.yaml").exists()


def test_serve_refuses_a_bad_seed_before_serving(invoke: Invoke, tmp_path: Path) -> None:
    seed = tmp_path / "bad.yaml"
    seed.write_text("clouds:\n  legacy:\n    tenants:\n      - nme: x\n")
    result = invoke("sim", "serve", "--cloud", "legacy:liberty:0", "--seed", str(seed),
                    "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {seed}:4: clouds.legacy.tenants[0]: unknown key "
                                    "'nme'")
    assert result.output.count("\n") == 1


def test_serve_refuses_an_unknown_profile(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("sim", "serve", "--cloud", "legacy:grizzly:0")
    assert result.exit_code == 2
    assert result.output == ("Error: --cloud cloud 'legacy:grizzly:0': unknown profile "
                             "'grizzly' (known: liberty, modern)\n")


def _start(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator.sim", "serve", "--cloud", "legacy:liberty:0",
         "--cloud", "target:modern:0", "--data-dir", str(data_dir), "--format", "json",
         *extra],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(scaled(30)) == 0


def test_serve_writes_clouds_yaml_and_keeps_state(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(yaml.safe_dump({"clouds": {"legacy": {"tenants": [{"name": "physics"}]}}}))
    data = tmp_path / "data"
    proc, info = _start(data, "--seed", str(seed))
    try:
        assert info["clouds_yaml"] == str(data / "clouds.yaml")
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(info["clouds_yaml"])
        legacy = openstack.connect(cloud="legacy")
        assert "physics" in [p.name for p in legacy.identity.projects()]
        target = openstack.connect(cloud="target")
        target.identity.create_project(name="kept", domain_id="default")
    finally:
        _stop(proc)
    # Restarted on the same data dir: what was created is still there, and new ports are
    # written to clouds.yaml.
    proc, info = _start(data, "--seed", str(seed))
    try:
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(info["clouds_yaml"])
        target = openstack.connect(cloud="target")
        assert [p.name for p in target.identity.projects()].count("kept") == 1
        legacy = openstack.connect(cloud="legacy")
        assert [p.name for p in legacy.identity.projects()].count("physics") == 1
    finally:
        _stop(proc)


def test_serve_tls_with_a_public_url(tmp_path: Path) -> None:
    """--tls: a CA in the data dir, clouds.yaml naming it, HTTPS URLs; --public-url: the
    target advertises localhost (a DNS name in front) instead of 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator.sim", "serve", "--cloud", "legacy:liberty:0",
         "--cloud", f"target:modern:{port}", "--public-url",
         f"target=https://localhost:{port}/", "--tls", "--data-dir", str(data),
         "--format", "json"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    try:
        assert info["cacert"] == str(data / "tls" / "ca.pem")
        assert info["clouds"]["target"] == {"profile": "modern",
                                            "url": f"https://localhost:{port}",
                                            "listen": f"https://127.0.0.1:{port}"}
        assert info["clouds"]["legacy"]["url"].startswith("https://127.0.0.1:")
        clouds = yaml.safe_load(Path(info["clouds_yaml"]).read_text())["clouds"]
        assert clouds["target"]["cacert"] == info["cacert"]
        assert clouds["target"]["auth"]["auth_url"] == f"https://localhost:{port}/identity/v3"
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(info["clouds_yaml"])
        target = openstack.connect(cloud="target")
        assert target.network.get_endpoint().startswith(f"https://localhost:{port}/")
        target.identity.create_project(name="over-tls", domain_id="default")
        legacy = openstack.connect(cloud="legacy")
        assert "admin" in [p.name for p in legacy.identity.projects()]
    finally:
        _stop(proc)


def test_serve_refuses_a_bad_public_url(invoke: Invoke) -> None:
    result = invoke("sim", "serve", "--cloud", "legacy:liberty:0", "--public-url",
                    "target=https://x.example")
    assert result.exit_code == 2
    assert result.output == ("Error: --public-url 'target=https://x.example': expected "
                             "NAME=URL with NAME one of the served clouds (legacy)\n")
    result = invoke("sim", "serve", "--cloud", "legacy:liberty:0", "--public-url",
                    "legacy=ftp://x.example")
    assert result.exit_code == 2
    assert result.output.startswith("Error: --public-url 'legacy=ftp://x.example': expected "
                                    "an http:// or https:// URL")
