"""CloudSession over real HTTP against the simulator: revoked tokens renewed once for all the
worker threads that meet the 401, token requests and version discovery retried under the
cloud's policy, bad credentials not retried, the environment (proxies, netrc, CA bundle
variables) read once per host instead of per request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from migrator.clouds.connection import CloudHandle, open_cloud
from migrator.clouds.session import CloudSession, SettledSession
from migrator.clouds.target import TargetCloud
from migrator.errors import CloudError
from migrator.retry import Backoff, RetryBudget, RetryPolicy
from migrator.sim.server import CloudSpec, SimServer
from tests.timing import scaled

TOKENS = "POST /identity/v3/auth/tokens"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = SimServer([CloudSpec("target", "modern")], tmp_path_factory.mktemp("sim")).start()
    yield server
    server.stop()


class Sim:
    def __init__(self, sim: SimServer) -> None:
        self.base = f"{sim.cloud('target').base_url}/_sim"

    def fault(self, **rule: Any) -> None:
        requests.post(f"{self.base}/faults", json=rule, timeout=10).raise_for_status()

    def clear(self) -> None:
        requests.delete(f"{self.base}/faults", timeout=10).raise_for_status()
        requests.delete(f"{self.base}/calls", timeout=10).raise_for_status()

    def expire_tokens(self) -> None:
        requests.post(f"{self.base}/tokens/expire", json={}, timeout=10).raise_for_status()

    def calls(self, route: str) -> int:
        calls = requests.get(f"{self.base}/calls", timeout=10).json()["calls"]
        return int(calls.get(route, 0))


@pytest.fixture
def admin(sim: SimServer) -> Iterator[Sim]:
    api = Sim(sim)
    api.clear()
    yield api
    api.clear()


def fast(budget: float = 100.0) -> RetryPolicy:
    return RetryPolicy(retries=4, backoff=Backoff(0.01, 0.05),
                       budget=RetryBudget(budget, 0.2, name="target"))


def open_target(sim: SimServer, retry: RetryPolicy | None = None) -> CloudHandle:
    return open_cloud("target", config_file=sim.clouds_yaml, role="target",
                      retry=retry or fast())


def test_the_handle_speaks_through_a_cloud_session_with_its_policy(sim: SimServer) -> None:
    policy = fast()
    handle = open_target(sim, policy)
    try:
        assert isinstance(handle.conn.session, CloudSession)
        assert handle.conn.session.retry is policy
        scoped = handle.scoped_to(str(handle.project_id))
        try:  # the same budget for every handle of the cloud
            assert scoped.retry is policy and scoped.conn.session.retry is policy
        finally:
            scoped.close()
    finally:
        handle.close()


def test_a_revoked_token_is_renewed_once_for_all_threads(sim: SimServer, admin: Sim) -> None:
    # Eight threads on one session while every token is revoked, eight times. Revocations
    # are spaced so that a renewed request is not itself revoked (that 401 would be fair).
    handle = open_target(sim)
    statuses: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def worker() -> None:
        while not done.is_set():
            status = handle.conn.network.get("/networks", raise_exc=False).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    try:
        before = admin.calls(TOKENS)
        for thread in threads:
            thread.start()
        for _ in range(8):
            done.wait(scaled(0.4))
            admin.expire_tokens()
        done.wait(scaled(0.4))
        done.set()
        for thread in threads:
            thread.join()
        renewed = admin.calls(TOKENS) - before
    finally:
        done.set()
        handle.close()
    print(f"{len(statuses)} requests, 8 revocations, {renewed} new tokens")
    # keystoneauth alone: one thread renews, the others hand their 401 to the caller.
    assert statuses.count(200) == len(statuses) > 8, sorted(set(statuses))
    # One new token per revocation, not one per thread (a revocation landing during a
    # token request costs one more).
    assert 8 <= renewed < 12


def test_token_requests_are_retried(sim: SimServer, admin: Sim) -> None:
    admin.fault(match=TOKENS, status=503, times=3)
    policy = fast()
    handle = open_target(sim, policy)
    try:
        assert handle.project_id
        assert admin.calls(TOKENS) == 4 and policy.budget.spent == 3
        # Later renewals too (a revoked token, then a 500 on the new token request).
        admin.fault(match=TOKENS, status=500, times=1)
        admin.expire_tokens()
        assert handle.get_json("network", "/networks")["networks"] is not None
        assert policy.budget.spent == 4
    finally:
        handle.close()


def test_bad_credentials_are_not_retried(sim: SimServer, admin: Sim) -> None:
    admin.fault(match=TOKENS, status=401)
    policy = fast()
    with pytest.raises(CloudError, match=r"^cloud target: authenticate .*HTTP 401"):
        open_target(sim, policy)
    assert admin.calls(TOKENS) == 1 and policy.budget.spent == 0


def test_an_empty_budget_stops_the_retries(sim: SimServer, admin: Sim) -> None:
    admin.fault(match=TOKENS, status=503)
    policy = fast(budget=2)
    with pytest.raises(CloudError, match="HTTP 503"):
        open_target(sim, policy)
    assert admin.calls(TOKENS) == 3 and policy.budget.refused == 1


def test_version_discovery_is_retried(sim: SimServer, admin: Sim) -> None:
    # Compute's version document answers 503 twice: without retries keystoneauth falls back
    # to the catalog URL with no microversion, and the target looked like a v2.0 API.
    admin.fault(match="GET /compute/v2.1", status=503, times=2)
    policy = fast()
    handle = open_target(sim, policy)
    try:
        assert TargetCloud(handle).compute_max_microversion() == (2, 96)
        assert policy.budget.spent >= 2
    finally:
        handle.close()


def test_the_environment_is_read_once_per_host(sim: SimServer, admin: Sim,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    proxies, netrc = requests.utils.get_environ_proxies, requests.utils.get_netrc_auth

    def counted_proxies(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(f"proxies {url}")
        return proxies(url, no_proxy=no_proxy)

    def counted_netrc(url: str, raise_errors: bool = False) -> Any:
        reads.append(f"netrc {url}")
        return netrc(url, raise_errors)

    monkeypatch.setattr(requests.utils, "get_environ_proxies", counted_proxies)
    monkeypatch.setattr(requests.utils, "get_netrc_auth", counted_netrc)
    handle = open_target(sim)
    try:
        session = handle.conn.session.session
        assert isinstance(session, SettledSession) and session.trust_env is False
        identity = handle.proxy("identity")
        identity.get("/projects").raise_for_status()
        after_one = len(reads)
        for _ in range(20):
            identity.get("/projects").raise_for_status()
            handle.proxy("network").get("/networks").raise_for_status()
        # Every endpoint of the simulated cloud is on one host: one read of each kind.
        assert after_one == len(reads) == 2, reads
        assert session.environment_reads() == 1
        assert admin.calls("GET /identity/v3/projects") == 21
    finally:
        handle.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("bypass", [False, True])
def test_proxies_and_no_proxy_from_the_environment_still_apply(
        sim: SimServer, monkeypatch: pytest.MonkeyPatch, bypass: bool) -> None:
    """A proxy in the environment when the session is made carries its requests (here one
    that refuses connections), unless no_proxy names the host."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_closed_port()}")
    if bypass:
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    policy = RetryPolicy(retries=0, budget=RetryBudget(0, 0, name="target"))
    if not bypass:
        with pytest.raises(CloudError, match="cannot reach") as refused:
            open_target(sim, policy)
        chain, cause = [], refused.value.__cause__
        while cause is not None:
            chain.append(str(cause))
            cause = cause.__cause__ or cause.__context__
        assert any("Unable to connect to proxy" in text for text in chain), chain
        return
    handle = open_target(sim, policy)
    try:
        handle.proxy("network").get("/networks").raise_for_status()
    finally:
        handle.close()
