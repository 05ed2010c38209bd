"""A lean transport for idempotent JSON reads: :class:`RawReader`.

Why: a GET through an SDK proxy costs about 1.6 ms of client CPU (openstacksdk's Proxy.request,
keystoneauth's Adapter and Session, requests' environment merging with a ``~/.netrc`` lookup
per request, then urllib3), against 0.3 ms for the same request through a urllib3 pool. A
discovery of 10,000 tenants makes ~50,000 per-owner reads, and the GIL serialises that CPU
across the worker threads, so the transport decides the wall time.

What stays the SDK's: the endpoint of each service (``Adapter.get_endpoint``: catalog, version
discovery, endpoint overrides), the token (the session's auth plugin: its headers are fetched
again every few seconds, so a renewal by the plugin is picked up, and after a 401 the plugin is
invalidated and the request sent once more, as keystoneauth does), and the microversion
headers (keystoneauth's own helper). What is not taken over: proxies from the environment or
the session, and client certificates; a handle with either keeps using the SDK path
(:meth:`RawReader.usable` says so).

Every answer received is counted through ``count`` (as the session's response hook counts
them); a request that got no answer raises, and the caller counts it as failed. Failures are
raised as the keystoneauth exceptions the SDK path raises (ConnectFailure, ConnectTimeout,
UnknownConnectionError), so that ``clouds.errors.translate`` words and classifies them the same
way."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from keystoneauth1 import adapter as ksa_adapter
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session
from openstack import exceptions as sdk_exc
from requests.structures import CaseInsensitiveDict

AUTH_REFRESH_S = 5.0  # how long fetched auth headers are reused before asking the plugin
POOL_SIZE = 32  # connections kept per host: more than any worker pool of ours

Count = Callable[[str], None]


class RawReader:
    """GETs with the session's token straight through a urllib3 pool (see the module doc)."""

    def __init__(self, conn: Any, *, timeout: float, count: Count) -> None:
        self._conn = conn
        self._session = conn.session  # keystoneauth1 Session
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._count = count
        self._bases: dict[str, str] = {}
        self._usable: dict[str, bool] = {}
        self._auth: tuple[float, dict[str, str]] | None = None
        self._lock = threading.Lock()
        verify = self._session.verify
        pool_kwargs: dict[str, Any] = {"maxsize": POOL_SIZE, "block": False}
        if verify is False:
            pool_kwargs["cert_reqs"] = "CERT_NONE"
        elif isinstance(verify, str):
            pool_kwargs["ca_certs"] = verify
        self._pool = urllib3.PoolManager(**pool_kwargs)
        self._agent = f"migrator {self._session.user_agent or ''}".strip()

    def usable(self, service: str) -> bool:
        """Whether reads of ``service`` may bypass the SDK (no proxy, no client cert, an
        endpoint found); decided once per service."""
        decided = self._usable.get(service)
        if decided is None:
            decided = False
            if not (self._session.cert or self._session.session.proxies):
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
            microversion: str | None = None, service_type: str | None = None
            ) -> requests.Response:
        """One GET (and at most one more after a 401); the answer as a requests Response."""
        url = self.url(service, path, params)
        headers = {"Accept": "application/json", "User-Agent": self._agent}
        if microversion:
            ksa_session.Session._set_microversion_headers(
                headers, microversion, service_type or self._service_type(service), None)
        auth = self._auth_headers()
        response = self._send(url, {**headers, **auth})
        if response.status_code == 401:
            renewed = self._auth_headers(renew=True, used=auth.get("X-Auth-Token"))
            if renewed:
                response = self._send(url, {**headers, **renewed})
        return response

    def _service_type(self, service: str) -> str:
        return str(getattr(self._conn, service).service_type)

    def _send(self, url: str, headers: dict[str, str]) -> requests.Response:
        try:
            raw = self._pool.request("GET", url, headers=headers, timeout=self._timeout,
                                     retries=False, redirect=False, preload_content=True)
        except urllib3.exceptions.SSLError as exc:  # counted by the caller, as a failure
            raise ksa_exc.SSLError(f"SSL exception connecting to {url}: {exc}") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise ksa_exc.ConnectTimeout(f"Request to {url} timed out") from exc
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError,
                urllib3.exceptions.MaxRetryError) as exc:
            raise ksa_exc.ConnectFailure(
                f"Unable to establish connection to {url}: {exc}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ksa_exc.UnknownConnectionError(
                f"Unexpected exception for {url}: {exc}", exc) from exc
        self._count("GET")
        return _as_response(raw, url)


def _as_response(raw: urllib3.BaseHTTPResponse, url: str) -> requests.Response:
    """A requests Response around an already-read urllib3 answer (what the error translation
    and the callers of the SDK path expect)."""
    response = requests.Response()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response._content = raw.data
    response.url = url
    response.reason = raw.reason or ""
    response.encoding = "utf-8"
    request = requests.PreparedRequest()
    request.method = "GET"
    request.url = url
    response.request = request
    return response


def loads(response: requests.Response) -> Any:
    """The JSON body (ValueError when it is not JSON)."""
    return json.loads(response.content)
