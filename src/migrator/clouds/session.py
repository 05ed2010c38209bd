"""The keystoneauth session of every cloud migrator opens (:class:`CloudSession`), and how a
failed call is classified for a retry (:func:`failure_of`).

What it changes in keystoneauth's behaviour, and why:

- **A 401 from a service re-authenticates, whichever thread sees it first.** keystoneauth
  answers a 401 by ``invalidate()`` (the plugin drops its token) and one re-send with a new
  token; but ``invalidate()`` returns False when the plugin holds no token, and keystoneauth
  then hands the 401 to the caller. With several worker threads on one session, a token that
  expires makes every in-flight request 401: the first thread drops the token, the others
  find none and fail (measured: 60 of 1,254 requests from 8 threads across 10 expiries).
  Here ``invalidate`` drops the token only when it is still the one this thread sent, and
  otherwise tells keystoneauth to fetch headers again (a new token is there, or on its way).
  Dropping it is done under the plugin's lock, and the plugin's ``get_access`` returns the
  token it fetched or checked under that lock: keystoneauth's own version re-reads
  ``auth_ref`` after releasing the lock (a type-narrowing ``assert``), so a token dropped by
  another thread in between raised a bare AssertionError in a worker.
- **Token requests are retried.** keystoneauth sends ``POST /auth/tokens`` (and the identity
  version discovery before it) with no status-code retries at all: one 500 on it failed a
  whole command. The plugin's ``get_auth_ref`` is wrapped so that a 429/5xx answer or a
  dropped connection is retried under the cloud's :class:`~migrator.retry.RetryPolicy`
  (budget included); a 401 there (bad credentials) is not retried.
- **Version discovery is retried.** keystoneauth reads each service's version document
  once per connection (a direct ``GET`` on the session, no adapter) and, when that fails,
  silently falls back to the catalog URL with no version information: a 503 there made the
  compute API look like a microversion-less v2.0 for the whole run. Direct GETs on the session
  (discovery; our own calls go through an adapter or clouds/raw_reads.py and retry
  themselves) are retried like token requests.
- ``session.retry`` carries the cloud's policy to every request path that only has the
  connection (transfer/): see :func:`retry_policy_of`.

- **The environment is read once per host, not on every request.** requests, trusting the
  environment (its default), reads the proxy variables (all of ``os.environ``, then
  ``no_proxy`` against the host), the CA bundle variables and ``~/.netrc`` for every request
  it sends, and stats the CA bundle for every HTTPS one: about a tenth of a worker's CPU per
  call. The session's requests session is a :class:`SettledSession`: requests' own
  environment reads are off (``trust_env = False``) and the same values are worked out the
  same way (requests' functions) the first time a host is called, then kept for the
  session's life; the CA bundle variables are read when the session is made. A process that
  changes its proxy environment afterwards must open its clouds again (migrator never does).

keystoneauth's own status-code and connect retries are switched off for every service
(clouds/connection.py): the retries are ours, counted and under the budget, and an upload is
never re-sent with a half-consumed body.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.utils
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session
from keystoneauth1.identity.base import BaseIdentityPlugin

from migrator.retry import TRANSIENT_STATUSES, Failed, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)


class CloudSession(ksa_session.Session):
    """A keystoneauth Session with the behaviour above; ``retry`` is the cloud's policy."""

    def __init__(self, *args: Any, retry: RetryPolicy | None = None, cloud: str = "?",
                 **kwargs: Any) -> None:
        given = kwargs.get("session")
        if given is None:
            kwargs["session"] = SettledSession(tls_ciphers=kwargs.get("tls_ciphers"),
                                               tls_min_version=kwargs.get("tls_min_version"))
        super().__init__(*args, **kwargs)
        if given is None:
            # Ours, so closed with the keystoneauth session (as the one it makes itself).
            self._session = self.session
        self.retry = retry if retry is not None else RetryPolicy()
        self.cloud = cloud
        self._sent = threading.local()
        if isinstance(self.auth, BaseIdentityPlugin):
            _retry_token_requests(self.auth, self)

    def request(self, url: str, method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        direct_get = (method == "GET" and not kwargs.get("endpoint_filter")
                      and not kwargs.get("endpoint_override") and not kwargs.get("stream")
                      and kwargs.get("raise_exc", True))
        # Identity's own discovery, inside a token request, is retried with the whole token
        # request (retried here too, every token try would be five).
        if not direct_get or getattr(self._sent, "authenticating", False):
            return super().request(url, method, **kwargs)
        send = super().request

        def once() -> Any:
            try:
                return send(url, method, **kwargs)
            except (ksa_exc.HttpError, ksa_exc.ConnectionError) as exc:
                return failure_of(exc)

        def note(attempt: int, delay: float, error: BaseException) -> None:
            log.info("cloud %s: GET %s failed (%s); retry %d in %.2f s", self.cloud,
                     _path(url), _short(error), attempt, delay)

        return call_with_retries(once, self.retry, on_retry=note)

    def get_auth_headers(self, auth: Any = None, **kwargs: Any) -> dict[str, str] | None:
        headers: dict[str, str] | None = super().get_auth_headers(auth, **kwargs)
        self._sent.token = (headers or {}).get("X-Auth-Token")
        return headers

    def invalidate(self, auth: Any = None) -> bool:
        plugin = auth or self.auth
        if isinstance(plugin, BaseIdentityPlugin):
            sent = getattr(self._sent, "token", None)
            with plugin._lock:
                current = plugin.auth_ref
                if current is None or (sent is not None and current.auth_token != sent):
                    # Another thread dropped or renewed it already: fetch and send again.
                    return True
                return bool(plugin.invalidate())
        return bool(super().invalidate(auth))


@dataclass(frozen=True)
class _HostEnvironment:
    """What the environment says about requests to one scheme://host:port."""

    proxies: dict[str, str]
    netrc: tuple[str, str] | None


class SettledSession(requests.Session):
    """A requests Session that reads the environment once per host (module doc): proxies
    (``no_proxy`` honoured per host), ``~/.netrc`` credentials per host, and the CA bundle
    variables (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) once, applied exactly where
    requests applies them; the CA bundle and client certificate paths are checked once per
    path. Mounts keystoneauth's keep-alive adapter, as keystoneauth does for its own."""

    def __init__(self, *, tls_ciphers: str | None = None,
                 tls_min_version: Any = None) -> None:
        super().__init__()
        self.trust_env = False  # requests' per-request reads; ours are per host
        self.ca_bundle: str | None = (os.environ.get("REQUESTS_CA_BUNDLE")
                                      or os.environ.get("CURL_CA_BUNDLE") or None)
        self._hosts: dict[tuple[str, str | None], _HostEnvironment] = {}
        self._lock = threading.Lock()
        adapter = _SettledAdapter(tls_ciphers=tls_ciphers, tls_min_version=tls_min_version)
        for scheme in list(self.adapters):
            self.mount(scheme, adapter)

    def environment_reads(self) -> int:
        """How many hosts' environments were read (tests: one per host, whatever the calls)."""
        return len(self._hosts)

    def host_environment(self, url: str, no_proxy: str | None = None) -> _HostEnvironment:
        parts = urlsplit(url)
        key = (f"{parts.scheme}://{parts.netloc}".lower(), no_proxy)
        found = self._hosts.get(key)
        if found is None:
            with self._lock:
                found = self._hosts.get(key)
                if found is None:
                    auth = requests.utils.get_netrc_auth(url)
                    found = _HostEnvironment(
                        dict(requests.utils.get_environ_proxies(url, no_proxy=no_proxy)),
                        tuple(auth) if auth else None)  # type: ignore[arg-type]
                    self._hosts[key] = found
        return found

    def merge_environment_settings(self, url: str, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        # requests' own, with its environment reads replaced by what was read once.
        if proxies is not None:
            env = self.host_environment(url, proxies.get("no_proxy"))
            for key, value in env.proxies.items():
                proxies.setdefault(key, value)
        if verify is True or verify is None:
            verify = self.ca_bundle or verify
        merged: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert)
        return merged

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if not request.auth and not self.auth and request.url:
            netrc = self.host_environment(str(request.url)).netrc
            if netrc:
                request.auth = netrc
        return super().prepare_request(request)


class _SettledAdapter(ksa_session.TCPKeepAliveAdapter):
    """keystoneauth's adapter, checking each CA bundle and certificate path once instead of on
    every request (requests stats them per request: exists, isdir)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._paths: dict[str, tuple[bool, bool]] = {}
        super().__init__(*args, **kwargs)

    def _path(self, path: str) -> tuple[bool, bool]:
        found = self._paths.get(path)
        if found is None:
            found = self._paths[path] = (os.path.exists(path), os.path.isdir(path))
        return found

    def build_connection_pool_key_attributes(self, request: Any, verify: Any,
                                             cert: Any = None) -> Any:
        if isinstance(verify, str) and self._path(verify)[0]:
            # requests asks os.path.isdir(verify) each time: answered once here.
            host, pool = super().build_connection_pool_key_attributes(request, True, cert)
            if self._path(verify)[1]:
                pool["ca_cert_dir"] = verify
            else:
                pool["ca_certs"] = verify
            return host, pool
        return super().build_connection_pool_key_attributes(request, verify, cert)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests' checks (same errors), each path looked at once.
        if url.lower().startswith("https") and verify:
            location = verify if verify is not True else requests.adapters.DEFAULT_CA_BUNDLE_PATH
            exists, is_dir = self._path(location) if location else (False, False)
            if not exists:
                raise OSError("Could not find a suitable TLS CA certificate bundle, "
                              f"invalid path: {location}")
            conn.cert_reqs = "CERT_REQUIRED"
            if is_dir:
                conn.ca_cert_dir = location
            else:
                conn.ca_certs = location
        else:
            conn.cert_reqs = "CERT_NONE"
            conn.ca_certs = None
            conn.ca_cert_dir = None
        if cert:
            conn.cert_file, conn.key_file = (cert, None) if isinstance(cert, str) else cert
            if conn.cert_file and not self._path(conn.cert_file)[0]:
                raise OSError("Could not find the TLS certificate file, "
                              f"invalid path: {conn.cert_file}")
            if conn.key_file and not self._path(conn.key_file)[0]:
                raise OSError(f"Could not find the TLS key file, invalid path: {conn.key_file}")


def _retry_token_requests(plugin: BaseIdentityPlugin, session: CloudSession) -> None:
    """Wrap ``plugin.get_auth_ref`` (what ``get_access`` calls, under the plugin's lock,
    whenever it needs a token) in the session's retries, and give the plugin a ``get_access``
    that returns what it read under the lock (see the module doc). Instance attributes,
    because the plugin's class is whatever clouds.yaml's ``auth_type`` chose."""
    inner = plugin.get_auth_ref

    def get_access(auth_session: Any, **kwargs: Any) -> Any:
        with plugin._lock:
            if plugin._needs_reauthenticate():
                plugin.auth_ref = plugin.get_auth_ref(auth_session)
            return plugin.auth_ref

    setattr(plugin, "get_access", get_access)  # noqa: B010 (an instance attribute)

    @functools.wraps(inner)
    def get_auth_ref(auth_session: Any, **kwargs: Any) -> Any:
        def once() -> Any:
            session._sent.authenticating = True
            try:
                return inner(auth_session, **kwargs)
            except (ksa_exc.HttpError, ksa_exc.ConnectionError,
                    ksa_exc.DiscoveryFailure) as exc:
                return failure_of(exc)
            finally:
                session._sent.authenticating = False

        def note(attempt: int, delay: float, error: BaseException) -> None:
            log.info("cloud %s: token request failed (%s); retry %d in %.2f s",
                     session.cloud, _short(error), attempt, delay)

        return call_with_retries(once, session.retry, on_retry=note)

    setattr(plugin, "get_auth_ref", get_auth_ref)  # noqa: B010 (an instance attribute)


def failure_of(exc: BaseException) -> Failed:
    """A keystoneauth/requests exception as a :class:`Failed`: retryable for a transient
    answer (429/5xx) and for connection trouble (refused, reset, timed out), not for TLS
    errors nor any other answer."""
    cause = _transient_cause(exc)
    if cause is None:
        return Failed(exc, retryable=False)
    response = getattr(cause, "response", None)
    retry_after = response.headers.get("Retry-After") if response is not None else None
    return Failed(exc, retryable=True, retry_after=retry_after)


def _transient_cause(exc: BaseException) -> BaseException | None:
    """The transient error in ``exc``'s chain (a DiscoveryFailure wraps the real one)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 6:
        if isinstance(current, ksa_exc.SSLError | requests.exceptions.SSLError):
            return None
        if isinstance(current, ksa_exc.HttpError):
            return current if current.http_status in TRANSIENT_STATUSES else None
        if isinstance(current, ksa_exc.ConnectionError | requests.ConnectionError
                      | requests.Timeout):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def retry_policy_of(cloud: Any) -> RetryPolicy:
    """The retry policy of a CloudHandle, an openstacksdk Connection or a keystoneauth
    session opened by clouds/connection.py; a default policy for anything else."""
    for candidate in (getattr(cloud, "retry", None),
                      getattr(getattr(cloud, "session", None), "retry", None),
                      getattr(getattr(getattr(cloud, "conn", None), "session", None), "retry",
                              None)):
        if isinstance(candidate, RetryPolicy):
            return candidate
    return RetryPolicy()  # a connection opened elsewhere: the defaults, a budget of its own


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
