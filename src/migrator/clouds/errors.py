"""The one place where openstacksdk, keystoneauth and requests exceptions become CloudErrors.

Every adapter call that can fail runs inside :func:`cloud_errors` (a context manager) or goes
through :func:`translate`. The message is one line::

    cloud legacy: GET /v2.0/networks (network): HTTP 503: Service Unavailable

naming the cloud, the operation, the resource when known, the HTTP status, the server's own
message (taken from the JSON error body each service uses) and the id the service logged the
call under (``x-openstack-request-id``, or Nova's ``x-compute-request-id``), so that an operator
can find it in the service's log::

    cloud target: GET /v2.0/networks (network): HTTP 503: Unavailable (request req-4c1e...)

A TLS failure says what TLS refused (``certificate verify failed: ...``) rather than the
urllib3 chain around it. Nothing from the request is echoed beyond its method and URL path:
no headers, no body, so no token and no password.
"""

from __future__ import annotations

import errno
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from migrator.errors import CloudError, MigratorError

MAX_SERVER_MESSAGE = 240


class CloudCallError(CloudError):
    """A cloud call failed; ``status`` is the HTTP status (None: no answer at all)."""

    def __init__(self, message: str, *, cloud: str, operation: str,
                 status: int | None = None, retryable: bool = False,
                 unreachable: bool = False) -> None:
        super().__init__(message)
        self.cloud = cloud
        self.operation = operation
        self.status = status
        self.retryable = retryable
        # No connection could be made at all (refused, no route, connect timeout): the
        # cloud is gone for every step, not just this call (MigratorError.stops_run).
        self.stops_run = unreachable


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
REQUEST_ID_HEADERS = ("x-openstack-request-id", "x-compute-request-id")
_REQUEST_ID = re.compile(r"^req-[0-9a-fA-F-]{1,64}$")
# "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ... (_ssl.c:1006)"
_SSL_REASON = re.compile(r"\[SSL(?:: [A-Z0-9_]+)?\] ([^\]\[]+?)\s*\(_ssl\.c")


def server_message(response: requests.Response | None) -> str:
    """The server's error message from a response body (every service nests it differently:
    ``{"NeutronError": {"message": ...}}``, ``{"badRequest": {"message": ...}}``,
    ``{"error": {"message": ...}}``, or plain text for Glance)."""
    if response is None:
        return ""
    try:
        body: Any = response.json()
    except (ValueError, json.JSONDecodeError):
        text = (response.text or "").strip()
        return _one_line(text)
    found = _find_message(body)
    return _one_line(found if found is not None else json.dumps(body)[:MAX_SERVER_MESSAGE])


def _find_message(body: Any, depth: int = 0) -> str | None:
    if depth > 3:
        return None
    if isinstance(body, dict):
        for key in ("message", "faultstring", "detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        for value in body.values():
            found = _find_message(value, depth + 1)
            if found:
                return found
    return None


def request_id(response: requests.Response | None) -> str | None:
    """The id the service gave the call, when it has the shape services give (``req-`` and a
    UUID): anything else in the header is not echoed."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if isinstance(value, str) and _REQUEST_ID.match(value.strip()):
            return value.strip()
    return None


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > MAX_SERVER_MESSAGE:
        line = line[: MAX_SERVER_MESSAGE - 3] + "..."
    return line


def _path(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def translate(exc: BaseException, cloud: str, operation: str,
              resource: str | None = None) -> CloudCallError:
    """A one-line CloudCallError for ``exc`` raised while doing ``operation`` on ``cloud``."""
    where = f"cloud {cloud}: {operation}" + (f" ({resource})" if resource else "")
    exc = _specific(exc)
    status: int | None = None
    detail: str
    if isinstance(exc, ksa_exc.Unauthorized):
        status = 401
        message = server_message(exc.response) or _one_line(str(exc.message or ""))
        detail = "authentication failed (HTTP 401" + (f": {message}" if message else "") + (
            "); check the credentials in clouds.yaml") + _rid(exc.response)
    elif isinstance(exc, sdk_exc.HttpException):
        status = exc.status_code
        response = getattr(exc, "response", None)
        message = server_message(response) or _one_line(str(exc.details or exc.message or ""))
        detail = f"HTTP {status}" + (f": {message}" if message else "") + _rid(response)
    elif isinstance(exc, ksa_exc.HttpError):
        status = exc.http_status
        message = server_message(exc.response) or _one_line(str(exc.details or exc.message))
        detail = f"HTTP {status}" + (f": {message}" if message else "") + _rid(exc.response)
    elif isinstance(exc, ksa_exc.ConnectTimeout | requests.Timeout):
        detail = "the connection timed out"
    elif isinstance(exc, ksa_exc.ConnectionError | requests.ConnectionError):
        detail = f"cannot connect: {_connect_reason(exc)}"
    elif isinstance(exc, ksa_exc.EndpointNotFound | sdk_exc.ServiceDisabledException):
        detail = f"no such endpoint in the catalog: {_one_line(str(exc))}"
    elif isinstance(exc, ksa_exc.DiscoveryFailure):
        detail = f"API version discovery failed: {_one_line(str(exc))}"
    else:
        detail = f"{type(exc).__name__}: {_one_line(str(exc))}"
    retryable = status in RETRYABLE_STATUSES or (
        status is None and isinstance(exc, ksa_exc.ConnectionError | requests.ConnectionError)
        and not _certificate_refused(exc)
    )
    error = CloudCallError(f"{where}: {detail}", cloud=cloud, operation=operation,
                           status=status, retryable=retryable, unreachable=cannot_connect(exc))
    # A service the catalog does not have stays absent however often the call is made.
    error.final = isinstance(exc, ksa_exc.EndpointNotFound | sdk_exc.ServiceDisabledException)
    return error


def _rid(response: requests.Response | None) -> str:
    found = request_id(response)
    return f" (request {found})" if found else ""


def _specific(exc: BaseException) -> BaseException:
    """The SDK wraps keystoneauth's connection errors in a bare SDKException: find the cause."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 6:
        if isinstance(current, ksa_exc.ConnectionError | ksa_exc.HttpError
                      | requests.ConnectionError | requests.Timeout):
            return current
        if isinstance(current, sdk_exc.HttpException):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return exc


def is_unreachable(exc: BaseException) -> bool:
    """Whether the cloud could not be reached at all (refused, timed out, name unknown)."""
    return isinstance(_specific(exc), ksa_exc.ConnectionError | requests.ConnectionError
                      | requests.Timeout)


def _tls_reason(exc: BaseException) -> str | None:
    """What TLS refused, out of the repr of urllib3's chain (its quotes escaped there); None
    when ``exc`` is no TLS failure."""
    text = str(exc)
    if not (isinstance(exc, ksa_exc.SSLError | requests.exceptions.SSLError) or "[SSL" in text):
        return None
    found = _SSL_REASON.search(text.replace("\\", ""))
    return found.group(1).rstrip(". ") if found else "TLS handshake failed"


def _certificate_refused(exc: BaseException) -> bool:
    """A certificate TLS did not accept: asking again cannot help until the trust changes."""
    reason = _tls_reason(exc) or ""
    return "certificate" in reason.lower()


def _connect_reason(exc: BaseException) -> str:
    text = str(exc)
    tls = _tls_reason(exc)
    if tls is not None:
        return (f"TLS: {tls} (check cacert, verify or insecure in clouds.yaml, "
                "or REQUESTS_CA_BUNDLE)")
    # keystoneauth: "Unable to establish connection to URL: <urllib3 noise>"; keep the URL and
    # the last, most specific reason ("Connection refused").
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "Connection reset", "Remote end closed connection",
                   "No route to host", "Network is unreachable"):
        if marker in text:
            return marker
    return _one_line(text)


@contextmanager
def cloud_errors(cloud: str, operation: str, resource: str | None = None) -> Iterator[None]:
    """Turn any SDK/keystoneauth/requests exception raised in the block into a CloudCallError.
    Our own MigratorErrors pass through unchanged."""
    try:
        yield
    except MigratorError:
        raise
    except (sdk_exc.SDKException, ksa_exc.ClientException, requests.RequestException) as exc:
        raise translate(exc, cloud, operation, resource) from exc


def describe(method: str, url: str | None) -> str:
    """``GET /v2.0/networks`` for messages (path and query only, never the host's secrets)."""
    return f"{method} {_path(url)}".strip()


# A connection attempt that found nothing there (as opposed to a connection made, then
# dropped or timed out while reading).
_NO_CONNECTION_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


def cannot_connect(exc: BaseException) -> bool:
    """Whether no connection could be made at all: refused, no route, an unknown name or a
    connect timeout (a cloud that is down or gone, not a call that failed). Found by type in
    the chain keystoneauth, requests and urllib3 build (causes, contexts, ``reason``s,
    ``args``), whatever their messages say."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 32:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # urllib3: NewConnectionError and NameResolutionError are ConnectTimeoutErrors too.
        if isinstance(current, urllib3.exceptions.ConnectTimeoutError | socket.gaierror):
            return True
        if isinstance(current, OSError) and current.errno in _NO_CONNECTION_ERRNOS:
            return True
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None),
                  *current.args)
        todo.extend(item for item in linked if isinstance(item, BaseException))
    return False
