"""The target adapter's plumbing: one request path with bounded retries and error translation.

Every call the target adapter makes goes through :meth:`TargetBase.request`: a raw REST call
through the openstacksdk proxy of the service (so the SDK's authentication, catalog and
endpoint discovery are used as they are), with

- idempotent methods (GET, HEAD, PUT, DELETE) retried on 429/500/502/503/504 and on dropped
  connections under the cloud's :class:`~migrator.retry.RetryPolicy` (a few times, a short
  backoff, Retry-After honoured and capped, the cloud's retry budget: the handle's policy,
  shared by every handle of that cloud); the retries are counted per thread so that a handler
  can record them in its step's audit trail;
- POST never retried here: a create that may or may not have happened is retried by the
  caller after looking the resource up by its source id (see the handlers);
- every failure turned into a one-line :class:`TargetCloudError` by clouds/errors.py's
  ``translate`` (the cloud, the operation, the resource, the HTTP status and the server's
  message), keeping Neutron's error type for callers that must tell a 409 apart.

Requests made through a ``CloudHandle`` are counted by the handle's call counter (its
response hook), retries and unanswered requests included.

Raw JSON (the API's own field names) is what the find/get/create functions return, so that a
step's ``spec.attrs`` (the API body) compares field by field with what the target echoes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from migrator.clouds.errors import CloudCallError, translate
from migrator.clouds.raw_reads import RawReader, RawResponse
from migrator.clouds.session import retry_policy_of
from migrator.errors import CloudError, NotFoundError
from migrator.retry import TRANSIENT_STATUSES, Failed, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

# Marks every resource migrator creates (see docs/architecture.md, "source ids on the target").
SOURCE_TAG_PREFIX = "migrator-src-"
RULE_DESCRIPTION_PREFIX = "migrator-src:"
USER_SOURCE_ATTRIBUTE = "migrator_source_id"

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})


def source_tag(source_id: str) -> str:
    """The tag a migrated project or Neutron resource carries: ``migrator-src-<source id>``."""
    return f"{SOURCE_TAG_PREFIX}{source_id}"


def source_of_tags(tags: Any) -> str | None:
    """The source id recorded in a resource's tags, if migrator created it."""
    for tag in tags or []:
        if isinstance(tag, str) and tag.startswith(SOURCE_TAG_PREFIX):
            return tag[len(SOURCE_TAG_PREFIX) :]
    return None


def migrated_source_id(resource: Mapping[str, Any]) -> str | None:
    """The source id a target resource (raw JSON) carries, whatever its kind; None when
    migrator did not create it (a name clash for the planner)."""
    found = source_of_tags(resource.get("tags"))
    if found:
        return found
    value = resource.get(USER_SOURCE_ATTRIBUTE)
    if isinstance(value, str) and value:
        return value
    description = resource.get("description")
    if isinstance(description, str) and description.startswith(RULE_DESCRIPTION_PREFIX):
        return description[len(RULE_DESCRIPTION_PREFIX) :]
    return None


class TargetCloudError(CloudCallError):
    """A target API call failed (a CloudCallError from clouds/errors.py's translation) with
    the Neutron error ``error_type`` when there is one, the server's ``server_message``, and
    whether retrying may help (``transient``)."""

    def __init__(
        self,
        message: str,
        *,
        cloud: str = "target",
        operation: str = "",
        status: int | None = None,
        retryable: bool = False,
        error_type: str | None = None,
        server_message: str = "",
        unreachable: bool = False,
    ) -> None:
        super().__init__(message, cloud=cloud, operation=operation, status=status,
                         retryable=retryable, unreachable=unreachable)
        self.error_type = error_type
        self.server_message = server_message

    @classmethod
    def from_call_error(cls, error: CloudCallError, *, error_type: str | None = None,
                        server_message: str = "") -> TargetCloudError:
        out = cls(error.message, cloud=error.cloud, operation=error.operation,
                  status=error.status, retryable=error.retryable, error_type=error_type,
                  server_message=server_message, unreachable=error.stops_run)
        out.final = error.final
        return out

    @property
    def transient(self) -> bool:
        return self.retryable or self.status in TRANSIENT_STATUSES


class TargetNotFoundError(TargetCloudError):
    """404 from the target."""


def server_message(response: Any) -> tuple[str, str | None]:
    """(message, error type) from an OpenStack error body, whatever the service's shape."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join((response.text or "").split())
        return text[:300], None
    if isinstance(body, dict):
        if isinstance(body.get("NeutronError"), dict):
            err = body["NeutronError"]
            return str(err.get("message", ""))[:300], err.get("type")
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])[:300], value.get("title") or value.get("type")
        if "message" in body:
            return str(body["message"])[:300], None
    return " ".join(str(body).split())[:300], None


class _Counter(threading.local):
    retries = 0
    calls = 0


class TargetBase:
    """Holds the SDK connection; see the module docstring for the request path."""

    def __init__(
        self,
        conn: Any,
        *,
        name: str | None = None,
        source_cloud: str = "legacy",
        retry: RetryPolicy | None = None,
        timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # A CloudHandle (clouds/connection.py) or a plain openstack.connection.Connection.
        self.handle = conn
        self.conn = getattr(conn, "conn", None) or getattr(conn, "connection", None) or conn
        self.name = name or str(getattr(conn, "name", None) or "target")
        self.source_cloud = source_cloud
        # The handle's policy (its cloud's retry budget) unless one is given.
        self.retry = retry if retry is not None else retry_policy_of(conn)
        # Upper bound of every wait_for_* (seconds).
        self.timeout = timeout
        self._sleep = sleep
        self._counter = _Counter()
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.Lock()
        self._computing: dict[str, threading.Lock] = {}

    # -- bookkeeping ---------------------------------------------------------------------
    @contextmanager
    def counting(self) -> Iterator[dict[str, int]]:
        """Counts the calls and retries of the block (this thread): ``{"calls", "retries"}``."""
        calls, retries = self._counter.calls, self._counter.retries
        out = {"calls": 0, "retries": 0}
        try:
            yield out
        finally:
            out["calls"] = self._counter.calls - calls
            out["retries"] = self._counter.retries - retries

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """A per-adapter memo (extension lists, microversions): computed once, by the first
        thread that asks; the others wait for its answer instead of asking the cloud too."""
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
            lock = self._computing.setdefault(key, threading.Lock())
        with lock:
            with self._cache_lock:
                if key in self._cache:
                    return self._cache[key]
            value = compute()  # an error leaves nothing cached: the next caller tries again
            with self._cache_lock:
                self._cache.setdefault(key, value)
                return self._cache[key]

    def source_description(self, source_id: str) -> str:
        return f"migrated from {self.source_cloud} {source_id}"

    # -- the request path ----------------------------------------------------------------
    def _proxy(self, service: str) -> Any:
        return getattr(self.conn, service)

    def _lean(self, service: str) -> RawReader | None:
        """The handle's lean transport for ``service`` (a CloudHandle's, when it applies):
        the SDK's endpoint, token and microversion headers, without its per-request cost."""
        lean = getattr(self.handle, "lean", None)
        return lean(service) if callable(lean) else None

    def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        op: str,
        what: str,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        microversion: str | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        missing_ok: bool = False,
        secret: bool = False,
    ) -> Any:
        """One API call; returns the decoded JSON body (None for an empty one, or for a 404
        when ``missing_ok``). ``op`` and ``what`` name the operation and the resource in
        error messages (``create network``, ``'physics-net'``). ``secret``: the body holds a
        secret, so keystoneauth must not log the call (its DEBUG log prints request bodies)."""
        lean = self._lean(service)
        proxy: Any = self._proxy(service) if lean is None else None
        kwargs: dict[str, Any] = {"raise_exc": False}
        if secret:
            kwargs["log"] = False
        if json is not None:
            kwargs["json"] = json
        if params:
            kwargs["params"] = dict(params)
        if microversion:
            kwargs["microversion"] = microversion
        idempotent = method in IDEMPOTENT_METHODS

        def once() -> Any:
            self._counter.calls += 1
            error: TargetCloudError
            try:
                if lean is not None:
                    response = lean.send(method, service, path, json=json, params=params,
                                         microversion=microversion)
                else:
                    response = proxy.request(path, method, **kwargs)
            except (ksa_exc.ConnectionError, ksa_exc.HttpError, sdk_exc.SDKException) as exc:
                # refused, dropped or timed out (or a token request that failed for good):
                # one line from clouds/errors.py
                if isinstance(exc, ksa_exc.ConnectionError):
                    self._count_failed(method)
                error = TargetCloudError.from_call_error(translate(exc, self.name, op, what))
                error.__cause__ = exc
                return Failed(error, retryable=idempotent and error.transient)
            status = response.status_code
            if status in ok:
                return _decoded(response)
            if status == 404 and missing_ok:
                return None
            message, error_type = server_message(response)
            cls = TargetNotFoundError if status == 404 else TargetCloudError
            answer = response.as_requests() if isinstance(response, RawResponse) else response
            error = cls.from_call_error(
                translate(sdk_exc.HttpException(response=answer), self.name, op, what),
                error_type=error_type, server_message=message,
            )
            return Failed(error, retryable=idempotent and error.transient,
                          retry_after=response.headers.get("Retry-After"))

        def note(attempt: int, delay: float, error: BaseException) -> None:
            self._counter.retries += 1
            self._count_retry()
            log.info("%s (retry %d/%d in %.2fs)", error, attempt, self.retry.retries, delay)

        return call_with_retries(once, self.retry, on_retry=note)

    def note_retry(self) -> None:
        """Count a retry made above this adapter (a create retried after a fresh lookup)."""
        self._counter.retries += 1
        self._count_retry()

    def _count_retry(self) -> None:
        counter = getattr(self.handle, "counter", None)
        if counter is not None and hasattr(counter, "add_retry"):
            counter.add_retry()

    def _count_failed(self, method: str) -> None:
        counter = getattr(self.handle, "counter", None)
        if counter is not None and hasattr(counter, "add_failed"):
            counter.add_failed(method)

    def wait_until(
        self, what: str, probe: Callable[[], Any], *, timeout: float | None = None,
        interval: float = 1.0,
    ) -> Any:
        """Call ``probe`` until it returns something truthy, at most ``timeout`` seconds
        (default: the adapter's); raise a one-line CloudError naming ``what`` otherwise."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise CloudError(f"{self.name}: timed out after {limit:g}s waiting for {what}")
            self._sleep(min(interval, max(deadline - time.monotonic(), 0.01)))

    @staticmethod
    def not_found(kind: str, target_id: str, cloud: str) -> NotFoundError:
        return NotFoundError(f"{cloud}: {kind} {target_id} does not exist")


def _decoded(response: Any) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def catalog_types(conn: Any) -> set[str]:
    """The service types in the catalog of the connection's token (``compute``,
    ``block-storage``...): a target without Nova or Neutron has none for them."""
    session = conn.session
    try:
        access = session.auth.get_access(session)
    except (ksa_exc.ClientException, sdk_exc.SDKException) as exc:
        raise TargetCloudError.from_call_error(
            translate(exc, "target", "read the catalog")) from exc
    return {str(t) for t in access.service_catalog.get_endpoints()}
