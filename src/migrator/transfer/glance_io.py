"""Raw Glance calls for the data path: image bytes read from a source (v2, or v1 where a patched
cloud has v2 disabled), written to a target with automatic re-sends off, image records read.

Everything goes through the cloud's keystoneauth session (auth, endpoints, TLS), never through
the SDK's image helpers: ``download_image`` verifies nothing when streaming without a file,
the v1 proxy is unsafe (see docs in ../shared/openstack-notes.md) and ``Image.upload`` lets the
image adapter re-send a half-consumed generator on 429/503 (``image_status_code_retries``
defaults to 5).

Errors become :class:`TransferError` with a one-line message naming the image and the cloud.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc

from migrator.clouds.errors import cannot_connect
from migrator.clouds.session import retry_policy_of
from migrator.retry import TRANSIENT_STATUSES, Failed, call_with_retries
from migrator.transfer.errors import TransferError

log = logging.getLogger(__name__)

# Answers after which the same request may succeed later (401: a new token on the next try).
RETRYABLE_STATUSES = frozenset({401, 408, 429, 500, 502, 503, 504})
# Connection trouble as keystoneauth, requests and urllib3 report it (mid-body included).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    ks_exc.ConnectionError,
    ks_exc.UnknownConnectionError,
    requests.RequestException,
    OSError,
)
try:  # urllib3 raises its own errors from a body being read (ProtocolError, ReadTimeoutError)
    from urllib3.exceptions import HTTPError as _Urllib3Error

    NETWORK_ERRORS = (*NETWORK_ERRORS, _Urllib3Error)
except ImportError:  # pragma: no cover
    pass

# A service missing from the catalog (keystoneauth's and openstacksdk's way of saying so):
# final, no retry can mend it.
NOT_IN_CATALOG: tuple[type[BaseException], ...] = (ks_exc.EndpointNotFound,
                                                   sdk_exc.ServiceDisabledException)

UPLOAD_NO_RETRIES: dict[str, Any] = {
    # keystoneauth would otherwise send the same (already consumed) body again:
    "connect_retries": 0,  # after a connection failure
    "status_code_retries": 0,  # after 429/503 (the image adapter's default is 5)
    "allow_reauth": False,  # after a 401 (new token, same request)
    "redirect": False,  # after a 3xx
}


class CloudLike(Protocol):
    """An ``openstack.connection.Connection`` or anything wrapping one the same way."""

    @property
    def session(self) -> Any: ...

    @property
    def image(self) -> Any: ...


def cloud_name(cloud: Any) -> str:
    name = getattr(cloud, "name", None) or getattr(getattr(cloud, "config", None), "name", None)
    return str(name) if name else "?"


def describe(exc: BaseException) -> str:
    """A one-line description of a low-level error (no URL query strings, no headers)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


HTML_TAG = re.compile(r"<[^>]*>")


def status_error(what: str, resp: requests.Response) -> TransferError:
    code = resp.status_code
    try:  # Glance's error body is a short text (or webob's HTML page); read here if streamed
        text = resp.text
        if "<html" in text[:200].lower():
            text = HTML_TAG.sub(" ", text.split("</title>", 1)[-1])
        body = " ".join(text.split())[:200]
    except NETWORK_ERRORS:
        body = ""
    detail = f": {body}" if body else ""
    return TransferError(f"{what}: HTTP {code}{detail}", retryable=code in RETRYABLE_STATUSES,
                         status_code=code)


def call(what: str, send: Callable[[], requests.Response]) -> requests.Response:
    """``send()``, its network errors (and a token request that failed for good) turned into
    a TransferError."""
    try:
        return send()
    except TransferError:
        raise
    except NOT_IN_CATALOG as exc:
        raise TransferError(f"{what}: the cloud's catalog has no such service: "
                            f"{describe(exc)}", retryable=False) from exc
    except ks_exc.HttpError as exc:  # raised by keystoneauth while it fetched a token
        code = exc.http_status
        raise TransferError(f"{what}: authenticating: HTTP {code}: {describe(exc)}",
                            retryable=code in RETRYABLE_STATUSES, status_code=code) from exc
    except NETWORK_ERRORS as exc:
        error = TransferError(f"{what}: {describe(exc)}", retryable=True)
        error.stops_run = cannot_connect(exc)  # the cloud is down: the run stops
        raise error from exc


def transient(error: TransferError) -> bool:
    """Whether sending the same call again soon may succeed: a 429/5xx answer or no answer
    (a 401 has had its re-authentication already, see clouds/session.py)."""
    return error.retryable and (error.status_code is None
                                or error.status_code in TRANSIENT_STATUSES)


def with_retries(cloud: Any, what: str, send: Callable[[], requests.Response],
                 ok: Callable[[requests.Response], bool]) -> requests.Response:
    """``call(what, send)`` again while it fails transiently (an idempotent request whose
    body, if any, can be sent again), under the cloud's retry policy; the last answer is
    returned when it is not transient, whatever its status."""
    policy = retry_policy_of(cloud)

    def once() -> requests.Response | Failed:
        try:
            resp = call(what, send)
        except TransferError as exc:
            return Failed(exc, retryable=transient(exc))
        if ok(resp) or resp.status_code not in TRANSIENT_STATUSES:
            return resp
        error = status_error(what, resp)
        resp.close()
        return Failed(error, retryable=True, retry_after=resp.headers.get("Retry-After"))

    def note(attempt: int, delay: float, error: BaseException) -> None:
        log.info("%s (retry %d/%d in %.2fs)", error, attempt, policy.retries, delay)

    return call_with_retries(once, policy, on_retry=note)


# -- reading the source ---------------------------------------------------------------------------
@dataclass
class SourceStream:
    """An open download: what the source declares about it and its bytes."""

    size: int | None  # Content-Length or x-image-meta-size; None when not declared
    checksum: str | None  # md5 the source sends (Content-MD5 / x-image-meta-checksum)
    chunks: Iterator[bytes]
    close: Callable[[], None]


class ImageReader(Protocol):
    """Opens an image's bytes on a source cloud."""

    cloud: str

    def open(self, image_id: str, *, chunk_size: int, timeout: float) -> SourceStream: ...


def _body_chunks(resp: requests.Response, chunk_size: int, what: str) -> Iterator[bytes]:
    received = 0
    try:
        for piece in resp.iter_content(chunk_size):
            if piece:
                received += len(piece)
                yield piece
    except NETWORK_ERRORS as exc:
        raise TransferError(f"{what} broke after {received} bytes: {describe(exc)}",
                            retryable=True) from exc


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "", "None") else None
    except ValueError:
        return None


def _stream(resp: requests.Response, chunk_size: int, what: str, size: int | None,
            checksum: str | None) -> SourceStream:
    if resp.status_code == 204:  # Glance v2: the image has no data
        resp.close()
        return SourceStream(0, checksum, iter(()), lambda: None)
    return SourceStream(size, checksum or None, _body_chunks(resp, chunk_size, what), resp.close)


class GlanceV2Reader:
    """``GET /v2/images/{id}/file`` through the cloud's image proxy, streamed."""

    def __init__(self, cloud: CloudLike) -> None:
        self.conn = cloud
        self.cloud = cloud_name(cloud)

    def open(self, image_id: str, *, chunk_size: int, timeout: float) -> SourceStream:
        what = f"download of image {image_id} from cloud {self.cloud}"
        resp = with_retries(self.conn, what, lambda: self.conn.image.get(
            f"images/{image_id}/file", stream=True, raise_exc=False, timeout=timeout),
            lambda r: r.status_code in (200, 204))
        if resp.status_code not in (200, 204):
            try:
                raise status_error(what, resp)
            finally:
                resp.close()
        return _stream(resp, chunk_size, what, _int_or_none(resp.headers.get("Content-Length")),
                       resp.headers.get("Content-MD5"))


VERSION_SUFFIX = re.compile(r"/v\d+(\.\d+)?/?$")


class GlanceV1Reader:
    """``GET /v1/images/{id}`` (the bytes, with ``x-image-meta-*`` headers) through the
    session, for a legacy cloud whose v2 API is disabled."""

    def __init__(self, cloud: CloudLike) -> None:
        self.conn = cloud
        self.cloud = cloud_name(cloud)

    def base_url(self) -> str:
        proxy = self.conn.image
        endpoint = self.conn.session.get_endpoint(
            service_type=getattr(proxy, "service_type", None) or "image",
            interface=getattr(proxy, "interface", None),
            region_name=getattr(proxy, "region_name", None))
        if not endpoint:
            raise TransferError(f"cloud {self.cloud} has no image endpoint", retryable=False)
        return VERSION_SUFFIX.sub("", str(endpoint)).rstrip("/")

    def open(self, image_id: str, *, chunk_size: int, timeout: float) -> SourceStream:
        what = f"download of image {image_id} from cloud {self.cloud} (Glance v1)"
        url = f"{self.base_url()}/v1/images/{image_id}"
        resp = with_retries(self.conn, what, lambda: self.conn.session.request(
            url, "GET", stream=True, raise_exc=False, connect_retries=0, timeout=timeout),
            lambda r: r.status_code == 200)
        if resp.status_code != 200:
            try:
                raise status_error(what, resp)
            finally:
                resp.close()
        headers = resp.headers
        size = _int_or_none(headers.get("x-image-meta-size") or headers.get("Content-Length"))
        return _stream(resp, chunk_size, what, size, headers.get("x-image-meta-checksum"))


def default_reader(cloud: CloudLike) -> ImageReader:
    """The v1 reader when the cloud's image proxy speaks v1 (v2 disabled), else v2."""
    version = str(getattr(cloud.image, "api_version", "") or "")
    if version.startswith("1"):
        return GlanceV1Reader(cloud)
    return GlanceV2Reader(cloud)


# -- writing the target ----------------------------------------------------------------------------
class SizedBody:
    """An iterable request body of a known length: requests sends it with Content-Length
    (not chunked), one ``sendall`` per chunk."""

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)


def upload(cloud: CloudLike, image_id: str, chunks: Iterable[bytes], size: int | None,
           timeout: float) -> requests.Response:
    """``PUT /v2/images/{id}/file`` with every automatic re-send off; the size declared
    (Content-Length and X-OpenStack-Image-Size) when known, chunked otherwise. Network errors
    raise TransferError; the answer is returned whatever its status."""
    headers = {"Content-Type": "application/octet-stream"}
    body: Iterable[bytes] = chunks
    if size is not None:
        headers["X-OpenStack-Image-Size"] = str(size)
        if size > 0:
            body = SizedBody(chunks, size)
    what = f"upload of image {image_id} to cloud {cloud_name(cloud)}"
    return call(what, lambda: cloud.image.put(
        f"images/{image_id}/file", data=body, headers=headers, raise_exc=False,
        timeout=timeout, **UPLOAD_NO_RETRIES))


def fresh_for_upload(record: dict[str, Any] | Any) -> bool:
    """A queued image that never stored anything, so bytes can be sent into it. A queued
    image with a size or a hash kept the data of a refused upload (Glance's ``_restore``
    after its format check saves what storing set): its file stays in the store and every
    later upload into it answers 500."""
    return (record.get("status") == "queued" and record.get("size") is None
            and not record.get("checksum") and not record.get("os_hash_value"))


def get_image_record(cloud: CloudLike, image_id: str, timeout: float) -> dict[str, Any]:
    """The image's raw v2 JSON (``GET /v2/images/{id}``)."""
    what = f"reading image {image_id} on cloud {cloud_name(cloud)}"
    resp = with_retries(cloud, what, lambda: cloud.image.get(
        f"images/{image_id}", raise_exc=False, timeout=timeout), lambda r: r.status_code == 200)
    if resp.status_code != 200:
        raise status_error(what, resp)
    record = resp.json()
    if not isinstance(record, dict):
        raise TransferError(f"{what}: the answer is not an image", retryable=True)
    return record
