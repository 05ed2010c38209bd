"""A lean transport for idempotent JSON reads: :class:`RawReader`.

Why: a GET through an SDK proxy costs about 1.6 ms of client CPU (openstacksdk's Proxy.request,
keystoneauth's Adapter and Session, requests' environment merging with a ``~/.netrc`` lookup
per request, then urllib3), against 0.08 ms for the same request on a kept-alive connection
of clouds/http_pool.py. A discovery of 10,000 tenants makes ~50,000
per-owner reads, and the GIL serialises that CPU across the worker threads, so the transport
decides the wall time.

What stays the SDK's: the endpoint of each service (``Adapter.get_endpoint``: catalog, version
discovery, endpoint overrides), the token (the session's auth plugin: its headers are fetched
again every few seconds, so a renewal by the plugin is picked up, and after a 401 the plugin is
invalidated and the request sent once more, as keystoneauth does), the microversion
headers (keystoneauth's own helper), and what HTTPS trusts: the session's ``verify`` and
``cert`` (clouds.yaml ``cacert``, ``verify: false``/``insecure``, ``cert``/``key``) as requests
merges them with its environment (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) and defaults (its
CA bundle), through requests' public ``Session.merge_environment_settings`` (see
:func:`session_trust`). What is not taken over: proxies from the environment or the session;
a handle with one keeps using the SDK path (:meth:`RawReader.usable` says so).

Every answer received is counted through ``count`` (as the session's response hook counts
them); a request that got no full answer raises, and the caller counts it as failed. Failures
are raised as the keystoneauth exceptions the SDK path raises (ConnectFailure, ConnectTimeout,
SSLError), so that ``clouds.errors.translate`` words and classifies them the same way.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests
from keystoneauth1 import adapter as ksa_adapter
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session
from openstack import exceptions as sdk_exc
from requests.structures import CaseInsensitiveDict

from migrator import jsoncodec
from migrator.clouds.http_pool import Answer, Pool, Trust

AUTH_REFRESH_S = 5.0  # how long fetched auth headers are reused before asking the plugin

Count = Callable[[str], None]


class RawReader:
    """GETs with the session's token on kept-alive connections (see the module doc)."""

    def __init__(self, conn: Any, *, timeout: float, count: Count) -> None:
        self._conn = conn
        self._session = conn.session  # keystoneauth1 Session
        self._count = count
        self._bases: dict[str, str] = {}
        self._usable: dict[str, bool] = {}
        self._auth: tuple[float, dict[str, str]] | None = None
        self._lock = threading.Lock()
        self._timeout = timeout
        self._pool: Pool | None = None
        self._header_sets: dict[tuple[str, str | None], dict[str, str]] = {}
        self._agent = f"migrator {self._session.user_agent or ''}".strip()

    def usable(self, service: str) -> bool:
        """Whether reads of ``service`` may bypass the SDK (no proxy, no client cert, an
        endpoint found); decided once per service."""
        decided = self._usable.get(service)
        if decided is None:
            decided = False
            if not self._session.session.proxies:
                try:
                    decided = not requests.utils.get_environ_proxies(self.base(service))
                except (ksa_exc.ClientException, sdk_exc.SDKException):
                    decided = False  # the SDK path raises it, worded as usual
            self._usable[service] = decided
        return decided

    def base(self, service: str) -> str:
        """The service's endpoint as the SDK proxy resolves it (cached per service)."""
        found = self._bases.get(service)
        if found is None:
            proxy = getattr(self._conn, service)
            # The Adapter's own method: the identity proxy overrides get_endpoint (it reads
            # Keystone's endpoint resources).
            found = str(ksa_adapter.Adapter.get_endpoint(proxy)).rstrip("/")
            self._bases[service] = found
        return found

    def url(self, service: str, path: str, params: Mapping[str, Any] | None) -> str:
        if path.startswith(("http://", "https://")):
            url = path
        else:  # keystoneauth joins base and path with exactly one slash
            url = f"{self.base(service)}/{path.lstrip('/')}"
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        return url

    def _auth_headers(self, *, renew: bool = False, used: str | None = None
                      ) -> dict[str, str]:
        with self._lock:
            cached = self._auth
            now = time.monotonic()
            if not renew and cached is not None and now - cached[0] < AUTH_REFRESH_S:
                return cached[1]
            headers = dict(self._session.get_auth_headers() or {})
            if renew and headers.get("X-Auth-Token") == used:
                # Refused although the plugin still holds it: drop it, authenticate again.
                self._session.invalidate()
                headers = dict(self._session.get_auth_headers() or {})
            self._auth = (now, headers)
            return headers

    def get(self, service: str, path: str, *, params: Mapping[str, Any] | None = None,
            microversion: str | None = None) -> RawResponse:
        """One GET (and at most one more after a 401)."""
        return self.send("GET", service, path, params=params, microversion=microversion)

    def send(self, method: str, service: str, path: str, *, json: Any = None,
             params: Mapping[str, Any] | None = None,
             microversion: str | None = None) -> RawResponse:
        """One request with an optional JSON body (and at most one more after a 401: a
        refused token means the request was not acted on). Not retried otherwise: that is the
        caller's decision (clouds/target_base.py retries only idempotent methods)."""
        url = self.url(service, path, params)
        headers = self._headers(service, microversion)
        body = None
        if json is not None:
            body = jsoncodec.compact(json).encode()
            headers = {**headers, "Content-Type": "application/json"}
        auth = self._auth_headers()
        response = self._send(url, {**headers, **auth}, method, body)
        if response.status_code == 401:
            renewed = self._auth_headers(renew=True, used=auth.get("X-Auth-Token"))
            if renewed:
                response = self._send(url, {**headers, **renewed}, method, body)
        return response

    def _headers(self, service: str, microversion: str | None) -> dict[str, str]:
        """The request's headers but the token: keystoneauth's microversion headers for the
        service's type, worked out once per (service, microversion)."""
        key = (service, microversion)
        found = self._header_sets.get(key)
        if found is None:
            found = {"Accept": "application/json", "User-Agent": self._agent}
            if microversion:
                service_type = str(getattr(self._conn, service).service_type)
                ksa_session.Session._set_microversion_headers(
                    found, microversion, service_type, None)
            self._header_sets[key] = found
        return found

    def _send(self, url: str, headers: dict[str, str], method: str = "GET",
              body: bytes | None = None) -> RawResponse:
        # A request that got no full answer raises; the caller counts it as a failure.
        try:
            answer = self._pool_for(url).request(method, url, headers, body)
        except ssl.SSLError as exc:
            raise ksa_exc.SSLError(f"SSL exception connecting to {url}: {exc}") from exc
        except TimeoutError as exc:
            raise ksa_exc.ConnectTimeout(f"Request to {url} timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ksa_exc.ConnectFailure(
                f"Unable to establish connection to {url}: {exc!r}") from exc
        self._count(method)
        return RawResponse(answer, url, method)

    def _pool_for(self, url: str) -> Pool:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = Pool(timeout=self._timeout,
                                      trust=session_trust(self._session, url))
                pool = self._pool
        return pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def session_trust(session: ksa_session.Session, url: str) -> Trust:
    """What the SDK's requests to ``url`` verify and present: keystoneauth passes its
    ``verify`` and ``cert`` to requests, which merges them with the environment (a CA bundle
    variable when verify is True) and its session's defaults, then uses its own CA bundle for
    a plain True. The URL only matters to requests for proxies, so one answer serves every
    endpoint of the session."""
    merged = session.session.merge_environment_settings(
        url, {}, None, session.verify, session.cert or None)
    verify = merged["verify"]
    cert = merged["cert"]
    if isinstance(cert, list):
        cert = tuple(cert)
    return Trust(verify=verify if isinstance(verify, bool | str) else bool(verify),
                 cert=cert or None, ca_bundle=requests.certs.where())


class RawResponse:
    """What get_json reads of an answer (the attributes of a requests Response it uses);
    :meth:`as_requests` builds the requests Response the SDK's error classes want."""

    def __init__(self, answer: Answer, url: str, method: str = "GET") -> None:
        self.status_code = answer.status
        self.url = url
        self.method = method
        self._answer = answer

    @property
    def content(self) -> bytes:
        return self._answer.body

    @property
    def text(self) -> str:
        return self._answer.body.decode("utf-8", "replace")

    @property
    def headers(self) -> CaseInsensitiveDict[str]:
        return CaseInsensitiveDict(self._answer.headers)

    def json(self) -> Any:
        # orjson on the bytes as received: a third of the stdlib decoder's CPU on the
        # 1,000-record listing pages (no str decode first).
        return jsoncodec.loads(self._answer.body)

    def as_requests(self) -> requests.Response:
        response = requests.Response()
        response.status_code = self.status_code
        response.headers = self.headers
        response._content = self._answer.body
        response.url = self.url
        response.reason = self._answer.reason
        response.encoding = "utf-8"
        request = requests.PreparedRequest()
        request.method = self.method
        request.url = self.url
        response.request = request
        return response


def missing_tls_file(trust: Trust) -> str | None:
    """The CA bundle, certificate or key ``trust`` names that does not exist (requests
    raises a bare OSError for it on the first HTTPS request), as ``what path``."""
    if trust.verify and trust.verify is not True and not os.path.exists(trust.verify):
        return f"CA bundle {trust.verify}"
    cert, key = trust.cert if isinstance(trust.cert, tuple) else (trust.cert, None)
    for what, path in (("client certificate", cert), ("client key", key)):
        if path and not os.path.exists(path):
            return f"{what} {path}"
    return None
