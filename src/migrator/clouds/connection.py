"""Opening a cloud by its clouds.yaml name: :func:`open_cloud` gives a :class:`CloudHandle`.

API versions per role (clouds.yaml keys; a key the operator's clouds.yaml already sets is
left as it is, ``api_overrides`` win over both):

=================  ==========================  ==========================
key                source (legacy, Liberty)    target (modern)
=================  ==========================  ==========================
identity           ``3`` (role assignments,    ``3``
                   domains; v2 tenants are
                   v3 projects)
image              ``2``                       ``2``
block_storage      ``2`` (catalog ``volumev2``) ``3`` (microversions)
network            ``2`` (no discovery)        ``2``
compute            ``2`` (``/v2.1/{tenant}``:  ``2``
                   microversions negotiated
                   per call, up to 2.12)
=================  ==========================  ==========================

A Liberty cloud whose catalog has only ``volume`` (v1) needs ``block_storage_api_version: '1'``
in its clouds.yaml entry, and cannot be read (v1 is not supported). Write identity v2 as
``'2'`` if ever needed, never ``'2.0'``.

The clouds.yaml searched is ``config_file`` when given (and only that file), else
openstacksdk's usual list: ``$OS_CLIENT_CONFIG_FILE``, ``./clouds.yaml``,
``~/.config/openstack/clouds.yaml``, ``/etc/openstack/clouds.yaml``.

Every HTTP request made through a handle (token requests included, retries included) is
counted by a response hook on the handle's requests session (:class:`CallCounter`);
:meth:`CloudHandle.scoped_to` shares the counter, so a discovery that reads some tenants
with other tokens still reports one total.

Reads: :meth:`CloudHandle.get_json` is the idempotent read path (raw JSON from the service's
endpoint as the SDK resolves it: catalog, endpoint discovery and microversion headers are the
SDK's; the request itself goes through a lean urllib3 pool, clouds/raw_reads.py, because the
SDK's per-request overhead dominated discoveries of thousands of tenants). It retries
429/500/502/503/504 answers and dropped connections under the handle's
:class:`~migrator.retry.RetryPolicy` (a few times, a short backoff, Retry-After honoured and
capped, the cloud's retry budget), because a GET can be repeated safely; writes are never
retried here (see clouds/target_base.py). Failures become one-line CloudErrors
(clouds/errors.py).

Retries and re-authentication: the handle's keystoneauth session is a
:class:`~migrator.clouds.session.CloudSession` (token requests retried, a 401 re-authenticates
whichever worker thread meets it), keystoneauth's own status-code and connect retries are off
for every service, and one :class:`~migrator.retry.RetryPolicy` (with one retry budget) serves
the handle and every handle scoped from it: the budget is per cloud.

Nothing here logs a password or a token: log lines name the cloud, the method and the path.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import openstack
import openstack.connection
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc
from openstack.config import loader

from migrator.clouds.clouds_yaml import check_clouds_files
from migrator.clouds.errors import (
    CloudCallError,
    cloud_errors,
    describe,
    is_unreachable,
    translate,
)
from migrator.clouds.raw_reads import (
    RawReader,
    RawResponse,
    missing_tls_file,
    session_trust,
)
from migrator.clouds.session import CloudSession
from migrator.errors import ConfigError
from migrator.retry import Failed, RetryBudget, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

Role = Literal["source", "target"]

DEFAULT_TIMEOUT = 60.0  # seconds per HTTP request
DEFAULT_WAIT_TIMEOUT = 600.0  # seconds for a wait_for_* (status polling)
# keystoneauth's own re-sends, off for every service: the retries are ours (module doc).
NO_KEYSTONEAUTH_RETRIES = {"connect_retries": 0, "status_code_retries": 0,
                           "image_status_code_retries": 0}

ROLE_DEFAULTS: dict[str, dict[str, str]] = {
    "source": {
        "identity_api_version": "3",
        "image_api_version": "2",
        "block_storage_api_version": "2",
        "network_api_version": "2",
        "compute_api_version": "2",
    },
    "target": {
        "identity_api_version": "3",
        "image_api_version": "2",
        "block_storage_api_version": "3",
        "network_api_version": "2",
        "compute_api_version": "2",
    },
}
# clouds.yaml spellings that already decide a version (the older volume_api_version too).
_EQUIVALENT_KEYS = {"block_storage_api_version": ("volume_api_version",)}


class CallCounter:
    """Counts HTTP requests (every response seen, plus requests that got none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.by_method: Counter[str] = Counter()
        self.retries = 0

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        method = getattr(getattr(response, "request", None), "method", None) or "?"
        with self._lock:
            self.total += 1
            self.by_method[method] += 1
        return response

    def count(self, method: str) -> None:
        """A request answered outside the session (clouds/raw_reads.py)."""
        with self._lock:
            self.total += 1
            self.by_method[method] += 1

    def add_failed(self, method: str) -> None:
        """A request that got no response (connection refused or dropped)."""
        with self._lock:
            self.total += 1
            self.by_method[method] += 1

    def add_retry(self) -> None:
        with self._lock:
            self.retries += 1


@dataclass
class CloudHandle:
    """An authenticated openstacksdk connection to one cloud, with its call counter."""

    name: str
    role: Role
    conn: openstack.connection.Connection
    config_file: str | None
    auth_url: str
    counter: CallCounter = field(default_factory=CallCounter)
    timeout: float = DEFAULT_TIMEOUT
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    api_overrides: Mapping[str, Any] = field(default_factory=dict)
    # get_json through clouds/raw_reads.py (False: every read through the SDK's session;
    # the configuration's source.lean_reads).
    lean_reads: bool = True
    _reader: RawReader | None = field(default=None, init=False, repr=False)
    _reader_lock: threading.Lock = field(default_factory=threading.Lock, init=False,
                                         repr=False)

    @property
    def connection(self) -> openstack.connection.Connection:
        return self.conn

    @property
    def calls(self) -> int:
        """HTTP requests made so far through this handle (and handles scoped from it)."""
        return self.counter.total

    @property
    def project_id(self) -> str | None:
        with cloud_errors(self.name, "authenticate", self.auth_url):
            return self.conn.session.get_project_id()

    @property
    def user_id(self) -> str | None:
        with cloud_errors(self.name, "authenticate", self.auth_url):
            return self.conn.session.get_user_id()

    def scoped_to(self, project_id: str) -> CloudHandle:
        """The same credentials with a token scoped to another project (one the user holds a
        role on); the call counter, the retry policy (its budget) and the read path are
        shared."""
        handle = _open(self.name, config_file=self.config_file, role=self.role,
                       api_overrides=self.api_overrides, timeout=self.timeout,
                       wait_timeout=self.wait_timeout, counter=self.counter, retry=self.retry,
                       auth_overrides={"project_id": project_id, "project_name": None,
                                       "project_domain_id": None, "project_domain_name": None},
                       check=True)
        handle.lean_reads = self.lean_reads
        return handle

    def as_user(self, username: str, password: str, user_domain_id: str, project_id: str
                ) -> CloudHandle:
        """Another user's credentials (a migrated user whose password migrator set) with a
        token scoped to ``project_id``; the call counter and the retry policy are shared."""
        handle = _open(self.name, config_file=self.config_file, role=self.role,
                       api_overrides=self.api_overrides, timeout=self.timeout,
                       wait_timeout=self.wait_timeout, counter=self.counter, retry=self.retry,
                       auth_overrides={"username": username, "password": password,
                                       "user_id": None, "user_domain_id": user_domain_id,
                                       "user_domain_name": None, "project_id": project_id,
                                       "project_name": None, "project_domain_id": None,
                                       "project_domain_name": None},
                       check=True)
        handle.lean_reads = self.lean_reads
        return handle

    def proxy(self, service: str) -> Any:
        """The SDK proxy of a service: identity, image, block_storage, network, compute."""
        return getattr(self.conn, service)

    def get_json(self, service: str, path: str, *, params: Mapping[str, Any] | None = None,
                 microversion: str | None = None, resource: str | None = None,
                 allow_404: bool = False) -> Any:
        """GET ``path`` (relative to the service's endpoint, or absolute) and return its JSON.

        Retried on 429/500/502/503/504 and dropped connections (idempotent). A 404 returns
        None when ``allow_404``; any other failure raises a one-line CloudCallError.
        """
        send = self._raw_get(service, params, microversion)
        where = resource or service

        def once() -> Any:
            try:
                response = send(path)
            except (ksa_exc.ConnectionError, ksa_exc.HttpError, sdk_exc.SDKException) as exc:
                if isinstance(exc, ksa_exc.ConnectionError):
                    self.counter.add_failed("GET")
                error = translate(exc, self.name, describe("GET", path), where)
                error.__cause__ = exc
                return Failed(error, retryable=error.retryable)
            status = response.status_code
            if status < 400:
                try:
                    return response.json()
                except ValueError as exc:
                    what = f"{describe('GET', response.url)} ({where})"
                    raise CloudCallError(
                        f"cloud {self.name}: {what}: the answer is not JSON",
                        cloud=self.name, operation="GET", status=status) from exc
            if status == 404 and allow_404:
                return None
            answer = response.as_requests() if isinstance(response, RawResponse) else response
            error = translate(sdk_exc.HttpException(response=answer), self.name,
                              describe("GET", response.url), where)
            return Failed(error, retryable=error.retryable,
                          retry_after=response.headers.get("Retry-After"))

        return call_with_retries(once, self.retry, on_retry=self._note_retry)

    def lean(self, service: str) -> RawReader | None:
        """The lean transport (clouds/raw_reads.py) for requests to ``service``, or None when
        it does not apply (turned off, a proxy, no endpoint): use the SDK's proxy then."""
        reader = self._reader
        if reader is None and self.lean_reads:
            with self._reader_lock:
                if self._reader is None:
                    self._reader = RawReader(self.conn, timeout=self.timeout,
                                             count=self.counter.count)
                reader = self._reader
        return reader if reader is not None and reader.usable(service) else None

    def _raw_get(self, service: str, params: Mapping[str, Any] | None,
                 microversion: str | None) -> Callable[[str], Any]:
        """One GET attempt of ``path``: through the lean transport when it applies (see
        clouds/raw_reads.py), else through the service's SDK proxy."""
        reader = self.lean(service)
        if reader is not None:
            return lambda path: reader.get(service, path, params=params,
                                           microversion=microversion)
        proxy = self.proxy(service)
        kwargs: dict[str, Any] = {"params": dict(params or {}), "raise_exc": False}
        if microversion:
            kwargs["microversion"] = microversion
        return lambda path: proxy.get(path, **kwargs)

    def _note_retry(self, attempt: int, delay: float, error: BaseException) -> None:
        self.counter.add_retry()
        log.info("%s; retry %d/%d in %.1f s", error, attempt, self.retry.retries, delay)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        try:
            self.conn.close()
        except Exception:  # closing must never fail a command
            log.debug("closing the connection to %s failed", self.name, exc_info=True)


def open_cloud(name: str, *, config_file: str | Path | None = None, role: Role = "source",
               api_overrides: Mapping[str, Any] | None = None,
               timeout: float = DEFAULT_TIMEOUT, wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
               check: bool = True, counter: CallCounter | None = None,
               retry: RetryPolicy | None = None) -> CloudHandle:
    """Connect to the cloud ``name`` of clouds.yaml with the API versions of ``role``.

    ``check`` authenticates at once, so that a wrong name, a dead endpoint or bad credentials
    fail here (ConfigError / CloudError) rather than in the middle of a command. ``counter``
    shares another handle's call counter (per-tenant credentials of one discovery). ``retry``
    is how the cloud's calls are retried (default: :class:`~migrator.retry.RetryPolicy`'s
    defaults, with a budget of its own).
    """
    if role not in ROLE_DEFAULTS:
        raise ConfigError(f"cloud {name}: unknown role {role!r} (source or target)")
    return _open(name, config_file=config_file, role=role, api_overrides=api_overrides or {},
                 timeout=timeout, wait_timeout=wait_timeout, counter=counter or CallCounter(),
                 retry=retry or RetryPolicy(budget=RetryBudget(name=name)),
                 auth_overrides=None, check=check)


def _open(name: str, *, config_file: str | Path | None, role: Role,
          api_overrides: Mapping[str, Any], timeout: float, wait_timeout: float,
          counter: CallCounter, retry: RetryPolicy,
          auth_overrides: Mapping[str, Any] | None, check: bool) -> CloudHandle:
    config = _load_config(config_file)
    clouds = config.cloud_config.get("clouds") or {}
    entry = clouds.get(name)
    if entry is None:
        where = config.config_filename or " or ".join(config._config_files) or "nowhere"
        known = ", ".join(sorted(clouds)) or "none"
        raise ConfigError(f"no cloud named {name!r} in clouds.yaml (searched {where}; "
                          f"clouds there: {known})")
    kwargs: dict[str, Any] = {}
    for key, value in ROLE_DEFAULTS[role].items():
        if key in entry or any(k in entry for k in _EQUIVALENT_KEYS.get(key, ())):
            continue  # the operator's clouds.yaml decides
        kwargs[key] = value
    kwargs.update(api_overrides)
    kwargs.update(NO_KEYSTONEAUTH_RETRIES)
    kwargs["api_timeout"] = timeout
    if auth_overrides:
        auth = dict(entry.get("auth") or {})
        for key, value in auth_overrides.items():
            if value is None:
                auth.pop(key, None)
            else:
                auth[key] = value
        kwargs["auth"] = auth
    try:
        region = config.get_one(cloud=name, **kwargs)
    except (sdk_exc.ConfigException, ksa_exc.ClientException) as exc:
        raise ConfigError(f"cloud {name} in {config.config_filename}: "
                          f"{' '.join(str(exc).split())}") from exc
    auth_url = str((region.config.get("auth") or {}).get("auth_url") or "?")
    region.set_session_constructor(
        functools.partial(CloudSession, retry=retry, cloud=name))  # type: ignore[arg-type]
    conn = openstack.connection.Connection(config=region)
    if auth_url.startswith("https://"):
        missing = missing_tls_file(session_trust(conn.session, auth_url))
        if missing:
            raise ConfigError(f"cloud {name}: the {missing} does not exist (clouds.yaml "
                              "cacert, cert, key; or REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)")
    conn.session.session.hooks.setdefault("response", []).append(counter.hook)
    handle = CloudHandle(name=name, role=role, conn=conn,
                         config_file=str(config_file) if config_file is not None else None,
                         auth_url=auth_url, counter=counter, timeout=timeout,
                         wait_timeout=wait_timeout, retry=retry,
                         api_overrides=dict(api_overrides))
    if check:
        _authenticate(handle)
    return handle


def _load_config(config_file: str | Path | None) -> loader.OpenStackConfig:
    try:
        if config_file is not None:
            path = Path(config_file)
            if not path.is_file():
                raise ConfigError(f"clouds.yaml file {path} does not exist")
            check_clouds_files(path)  # before the SDK, which would skip a broken file
            # Only that file: $OS_CLIENT_CONFIG_FILE would otherwise be read first.
            return loader.OpenStackConfig(config_files=[str(path)], secure_files=[],
                                          load_envvars=False)
        check_clouds_files(None)
        return loader.OpenStackConfig()
    except sdk_exc.ConfigException as exc:
        raise ConfigError(f"clouds.yaml: {' '.join(str(exc).split())}") from exc


def _authenticate(handle: CloudHandle) -> None:
    try:
        handle.conn.authorize()
    except (sdk_exc.SDKException, ksa_exc.ClientException) as exc:
        if is_unreachable(exc):
            handle.counter.add_failed("POST")
            error = translate(exc, handle.name, "authenticate")
            reason = error.message.split(": cannot connect: ", 1)[-1]
            raise CloudCallError(f"cloud {handle.name}: cannot reach {handle.auth_url}: "
                                 f"{reason}", cloud=handle.name,
                                 operation="authenticate") from exc
        raise translate(exc, handle.name, "authenticate", handle.auth_url) from exc
