"""Which failures mean "the cloud is gone" (``stops_run``: the executor stops the run) and
which are one call's (an HTTP error, a dropped connection), through real sockets: the SDK's
path (CloudHandle.get_json), the data path (transfer.glance_io.call) and a raw drop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from migrator.clouds.connection import open_cloud
from migrator.clouds.errors import CloudCallError, cannot_connect
from migrator.sim.server import CloudSpec, SimServer
from migrator.transfer.errors import TransferError
from migrator.transfer.glance_io import call
from tests.clouds.legacy_sim import SimAdmin


@pytest.fixture
def closing_server() -> Iterator[str]:
    """A server that accepts connections and closes them at once (a drop, not a refusal)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    stop.set()
    thread.join()
    listener.close()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_a_cloud_that_stopped_answering_stops_runs(tmp_path: Path) -> None:
    sim = SimServer([CloudSpec("legacy", "liberty")], tmp_path / "sim").start()
    running = True
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    handle.read_retries = 0
    try:
        assert "networks" in handle.get_json("network", "/networks")
        SimAdmin(sim).add_fault(match="GET /network/v2.0/networks", status=503)
        with pytest.raises(CloudCallError) as answered:
            handle.get_json("network", "/networks", resource="networks")
        assert answered.value.status == 503 and not answered.value.stops_run
        sim.stop()
        running = False
        with pytest.raises(CloudCallError) as gone:
            handle.get_json("network", "/networks", resource="networks")
    finally:
        handle.close()
        if running:
            sim.stop()
    assert gone.value.stops_run and gone.value.status is None
    assert str(gone.value) == ("cloud legacy: GET /networks (networks): cannot connect: "
                               "Connection refused")


def test_the_data_path_tells_a_refusal_from_a_drop(closing_server: str) -> None:
    what = "download of image x from cloud legacy"
    with pytest.raises(TransferError) as refused:
        call(what, lambda: requests.get(closed_port(), timeout=10))
    assert refused.value.stops_run and refused.value.retryable
    assert str(refused.value).startswith(f"{what}: ")
    with pytest.raises(TransferError) as dropped:
        call(what, lambda: requests.get(closing_server, timeout=10))
    assert dropped.value.retryable and not dropped.value.stops_run
    with pytest.raises(requests.ConnectionError) as raw:
        requests.get(closing_server, timeout=10)
    assert not cannot_connect(raw.value)
