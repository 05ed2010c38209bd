"""HTTPS: what the lean reader (clouds/raw_reads.py, clouds/http_pool.py) trusts is what the
SDK trusts (clouds.yaml ``cacert``, ``verify: false``, the requests CA bundle variables, client
certificates), host names are checked, a refusal is one line naming the cloud and the URL,
and ``lean_reads: false`` reads through the SDK. Against the simulator serving HTTPS with its
own CA (sim/tls.py)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from keystoneauth1 import exceptions as ksa_exc

import migrator.clouds.connection as connection_module
from migrator.clouds.connection import open_cloud
from migrator.clouds.errors import translate
from migrator.clouds.http_pool import Pool, Trust
from migrator.clouds.raw_reads import RawReader, session_trust
from migrator.errors import CloudError, ConfigError
from migrator.sim.server import CloudSpec, SimServer
from migrator.sim.tls import ensure_tls_files, issue_certificate, load_ca
from tests.clouds.legacy_sim import start_legacy

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = start_legacy(tmp_path_factory.mktemp("tls"), tls=True)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_ca_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own CA variables would decide what verify=True trusts."""
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def clouds_yaml(sim: SimServer, path: Path, **changes: Any) -> Path:
    """The simulator's ``legacy`` entry with ``changes`` (a None value drops the key)."""
    entry = json.loads(json.dumps(yaml.safe_load(sim.clouds_yaml.read_text())["clouds"]
                                  ["legacy"]))
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    path.write_text(yaml.safe_dump({"clouds": {"legacy": entry}}))
    return path


def read_both_ways(path: Path) -> None:
    """The SDK path and the lean reader, each over HTTPS, give the same projects."""
    handle = open_cloud("legacy", config_file=path)
    try:
        sdk = handle.proxy("identity").get("/projects").json()
        reader = RawReader(handle.conn, timeout=10, count=lambda method: None)
        assert reader.usable("identity")
        raw = reader.get("identity", "/projects")
        assert raw.url.startswith("https://")
        assert raw.status_code == 200
        assert raw.json() == sdk
        assert {p["name"] for p in sdk["projects"]} >= {"physics", "chemistry", "biology"}
        reader.close()
    finally:
        handle.close()


def test_the_data_dir_holds_a_ca_and_clouds_yaml_names_it(sim: SimServer) -> None:
    entry = yaml.safe_load(sim.clouds_yaml.read_text())["clouds"]["legacy"]
    assert entry["cacert"] == str(sim.data_dir / "tls" / "ca.pem")
    assert entry["auth"]["auth_url"].startswith("https://127.0.0.1:")
    assert (sim.data_dir / "tls" / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert (sim.data_dir / "tls" / "server-key.pem").stat().st_mode & 0o777 == 0o600


def test_cacert_from_clouds_yaml(sim: SimServer) -> None:
    read_both_ways(sim.clouds_yaml)


def test_verify_false(sim: SimServer, tmp_path: Path) -> None:
    read_both_ways(clouds_yaml(sim, tmp_path / "c.yaml", cacert=None, verify=False))


def test_insecure(sim: SimServer, tmp_path: Path) -> None:
    read_both_ways(clouds_yaml(sim, tmp_path / "c.yaml", cacert=None, insecure=True))


@pytest.mark.parametrize("variable", CA_VARIABLES)
def test_requests_ca_variables(sim: SimServer, tmp_path: Path, variable: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, str(sim.cacert))
    read_both_ways(clouds_yaml(sim, tmp_path / "c.yaml", cacert=None))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl names hashed CA files")
def test_a_ca_directory(sim: SimServer, tmp_path: Path) -> None:
    """requests' rule: a directory is a hashed CA directory (c_rehash layout)."""
    assert sim.cacert is not None
    folder = tmp_path / "cas"
    folder.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(sim.cacert)],
        check=True, capture_output=True, text=True).stdout.strip()
    (folder / f"{subject_hash}.0").write_text(sim.cacert.read_text())
    read_both_ways(clouds_yaml(sim, tmp_path / "c.yaml", cacert=str(folder)))


def test_the_requests_bundle_alone_does_not_know_the_simulator(sim: SimServer,
                                                               tmp_path: Path) -> None:
    path = clouds_yaml(sim, tmp_path / "c.yaml", cacert=None)
    with pytest.raises(CloudError) as info:
        open_cloud("legacy", config_file=path)
    url = f"{sim.cloud('legacy').base_url}/identity/v3"
    assert str(info.value) == (
        f"cloud legacy: cannot reach {url}: TLS: certificate verify failed: unable to get "
        "local issuer certificate (check cacert, verify or insecure in clouds.yaml, or "
        "REQUESTS_CA_BUNDLE)")


def test_the_lean_reader_refuses_what_the_sdk_refuses(sim: SimServer, tmp_path: Path) -> None:
    """The session trusts another CA once the endpoint is known: the reader's own connection
    is refused, worded as the SDK path's refusal, and not retryable (a certificate does not
    change by asking again)."""
    other = ensure_tls_files(tmp_path / "other")
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    reader = RawReader(handle.conn, timeout=10, count=lambda method: None)
    try:
        assert reader.usable("identity")  # the endpoint, resolved while the CA was right
        handle.conn.session.verify = str(other.ca_cert)
        with pytest.raises(ksa_exc.SSLError) as info:
            reader.get("identity", "/projects")
        error = translate(info.value, "legacy", "GET /projects", "identity")
        assert error.message == (
            "cloud legacy: GET /projects (identity): cannot connect: TLS: certificate verify "
            "failed: unable to get local issuer certificate (check cacert, verify or insecure "
            "in clouds.yaml, or REQUESTS_CA_BUNDLE)")
        assert not error.retryable
    finally:
        reader.close()
        handle.close()


def test_session_trust_follows_requests(sim: SimServer, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url = sim.cloud("legacy").base_url
    for variable in CA_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

    def opened() -> Any:
        # The CA bundle variables are read when the session is made (clouds/session.py).
        return open_cloud("legacy", config_file=sim.clouds_yaml, check=False)

    handle = opened()
    session = handle.conn.session
    try:
        assert session_trust(session, url).verify == str(sim.cacert)
        session.verify = True
        assert session_trust(session, url).verify is True
        assert session_trust(session, url).ca_bundle == requests.certs.where()
        monkeypatch.setenv("CURL_CA_BUNDLE", "/curl/ca.pem")
        # Read once per session: a variable set afterwards does not apply to it.
        assert session_trust(session, url).verify is True
    finally:
        handle.close()
    for expected in ("/curl/ca.pem", "/requests/ca.pem"):
        if expected == "/requests/ca.pem":
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/requests/ca.pem")  # requests' order
        handle = opened()
        session = handle.conn.session
        try:
            session.verify = True
            assert session_trust(session, url).verify == expected
            session.verify = str(sim.cacert)  # a cacert wins over the environment
            assert session_trust(session, url).verify == str(sim.cacert)
            session.verify = False
            assert session_trust(session, url).verify is False
            session.cert = ("/c.pem", "/k.pem")
            assert session_trust(session, url).cert == ("/c.pem", "/k.pem")
        finally:
            handle.close()


def test_the_host_name_is_checked(tmp_path: Path) -> None:
    """A certificate for localhost/127.0.0.1/::1 is refused at 127.0.0.2 (same server)
    unless verification is off."""
    server = SimServer([CloudSpec("legacy", "liberty", host="0.0.0.0")], tmp_path,
                       tls=True).start()
    try:
        assert server.cacert is not None
        port = server.cloud("legacy").port
        good = Pool(timeout=10, trust=Trust(verify=str(server.cacert)))
        assert good.get(f"https://127.0.0.1:{port}/identity/v3", {}).status == 200
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            good.get(f"https://127.0.0.2:{port}/identity/v3", {})
        off = Pool(timeout=10, trust=Trust(verify=False))
        assert off.get(f"https://127.0.0.2:{port}/identity/v3", {}).status == 200
        good.close()
        off.close()
    finally:
        server.stop()


def test_client_certificates_from_clouds_yaml(tmp_path: Path) -> None:
    """A server that requires a client certificate: clouds.yaml's cert and key reach both
    paths; without them the handshake is refused in one line."""
    files = ensure_tls_files(tmp_path / "sim")
    ca_cert, ca_key = load_ca(files)
    cert_pem, key_pem = issue_certificate(ca_cert, ca_key, ["migrator"], client=True)
    (tmp_path / "client.pem").write_bytes(cert_pem)
    (tmp_path / "client-key.pem").write_bytes(key_pem)
    server = SimServer([CloudSpec("legacy", "liberty")], tmp_path / "sim", tls=True,
                       tls_client_ca=files.ca_cert).start()
    try:
        refused = tmp_path / "none.yaml"
        refused.write_text(server.clouds_yaml.read_text())
        with pytest.raises(CloudError) as info:
            open_cloud("legacy", config_file=refused)
        # TLS 1.3 refuses a missing client certificate after the handshake: the client sees
        # an alert or the connection closed, whichever comes first.
        assert str(info.value).startswith(
            f"cloud legacy: cannot reach {server.cloud('legacy').base_url}/identity/v3: ")
        assert "\n" not in str(info.value)
        data = yaml.safe_load(server.clouds_yaml.read_text())
        data["clouds"]["legacy"].update(cert=str(tmp_path / "client.pem"),
                                        key=str(tmp_path / "client-key.pem"))
        path = tmp_path / "with-cert.yaml"
        path.write_text(yaml.safe_dump(data))
        handle = open_cloud("legacy", config_file=path)
        try:
            reader = RawReader(handle.conn, timeout=10, count=lambda method: None)
            assert reader.usable("identity")
            raw = reader.get("identity", "/projects")
            assert raw.status_code == 200
            assert raw.json() == handle.proxy("identity").get("/projects").json()
            reader.close()
        finally:
            handle.close()
    finally:
        server.stop()


def test_lean_reads_off_reads_through_the_sdk(sim: SimServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    class NoLeanReader:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("the lean reader was used although lean_reads is off")

    monkeypatch.setattr(connection_module, "RawReader", NoLeanReader)
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    try:
        handle.lean_reads = False
        names = {p["name"] for p in handle.get_json("identity", "/projects")["projects"]}
        assert "physics" in names
        scoped = handle.scoped_to(handle.project_id or "")
        assert scoped.lean_reads is False
        scoped.close()
    finally:
        handle.close()


@pytest.mark.parametrize(("changes", "variable", "missing"), [
    ({"cacert": "/nonexistent/ca.pem"}, None, "CA bundle /nonexistent/ca.pem"),
    ({"cacert": None}, "/nonexistent/env-ca.pem", "CA bundle /nonexistent/env-ca.pem"),
    ({"cert": "/nonexistent/client.pem"}, None, "client certificate /nonexistent/client.pem"),
])
def test_a_missing_tls_file_is_a_config_error(sim: SimServer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              changes: dict[str, Any], variable: str | None,
                                              missing: str) -> None:
    """requests raises a bare OSError for these on the first request: named here instead."""
    if variable:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", variable)
    path = clouds_yaml(sim, tmp_path / "c.yaml", **changes)
    with pytest.raises(ConfigError) as info:
        open_cloud("legacy", config_file=path)
    assert str(info.value) == (f"cloud legacy: the {missing} does not exist (clouds.yaml "
                               "cacert, cert, key; or REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)")
