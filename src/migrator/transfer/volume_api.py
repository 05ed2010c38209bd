"""Raw Cinder and Glance calls for the volume data path, through a connection's SDK proxies
(catalog, token, endpoint) with ``raise_exc=False`` and the status checked here.

Why raw: on Liberty the SDK's v2 volume actions never raise (``upload_volume_to_image`` dies
with a KeyError on an error answer, ``set_bootable`` fails silently), and its image helpers do
lookups we do not want. Idempotent calls (GET, HEAD, PUT, PATCH, DELETE, and the POSTs the
caller marks ``idempotent``: a volume action that sets a value, a member add whose 409 means
"already there") are retried on 429/5xx answers and dropped connections under the cloud's
retry policy (migrator/retry.py, clouds/session.py). Other POSTs are sent once (keystoneauth's
re-sends off): a volume created twice by a re-sent request would be a duplicate; the phases
that create look up by name or source id first, so they are run again instead
(handlers/data.py). Errors are :class:`TransferError` naming the resource and the cloud;
``retryable`` for network trouble, 401/408/429 and 5xx.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from migrator.clouds.session import retry_policy_of
from migrator.retry import Failed, call_with_retries
from migrator.transfer.errors import TransferError
from migrator.transfer.glance_io import RETRYABLE_STATUSES, call, cloud_name, transient

log = logging.getLogger(__name__)

NO_RESEND: dict[str, Any] = {"connect_retries": 0, "status_code_retries": 0}
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
MAX_PAGES = 1000  # a listing that never ends is a server bug, not a reason to loop forever


def as_connection(cloud: Any) -> Any:
    """An openstacksdk Connection from a Connection or a wrapper with ``.connection``
    (clouds.connection.CloudHandle)."""
    conn = getattr(cloud, "connection", None)
    return conn if conn is not None and hasattr(conn, "block_storage") else cloud


def server_message(resp: Any) -> str:
    """The error message of an OpenStack answer: ``{"badRequest": {"message": ...}}``
    (Cinder, Nova), ``{"message": ...}`` or a short text (Glance)."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    except Exception:  # a broken stream: no message
        return ""
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return " ".join(value["message"].split())[:300]
        if isinstance(body.get("message"), str):
            return " ".join(body["message"].split())[:300]
    try:
        return " ".join(str(resp.text).split())[:300]
    except Exception:
        return ""


def answer_error(what: str, resp: Any) -> TransferError:
    code = int(resp.status_code)
    message = server_message(resp)
    return TransferError(f"{what}: HTTP {code}{': ' + message if message else ''}",
                         retryable=code in RETRYABLE_STATUSES, status_code=code)


class Api:
    """The calls of one cloud (``role`` is only for messages)."""

    def __init__(self, cloud: Any) -> None:
        self.conn = as_connection(cloud)
        self.name = cloud_name(self.conn)
        self.retry = retry_policy_of(cloud)
        # A CloudHandle's lean transport (clouds/raw_reads.py) for JSON calls, when it has
        # one: the SDK's endpoint and token without its per-request cost.
        self._lean = getattr(cloud, "lean", None)

    # -- plumbing ---------------------------------------------------------------------------
    def request(self, service: str, method: str, path: str, what: str, *,
                body: Any = None, params: Mapping[str, Any] | None = None,
                ok: tuple[int, ...] = (200, 201, 202, 204),
                missing_ok: bool = False, idempotent: bool | None = None,
                data: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        """One call; the decoded JSON (None when empty, or for a 404 with ``missing_ok``).
        ``idempotent`` (default: by method) allows retries; ``data`` and ``headers`` send a
        body that is not JSON (a JSON patch)."""
        kwargs: dict[str, Any] = {"raise_exc": False}
        if body is not None:
            kwargs["json"] = body
        if data is not None:
            kwargs["data"] = data
        if headers:
            kwargs["headers"] = dict(headers)
        if params:
            kwargs["params"] = dict(params)
        if method == "POST":
            kwargs.update(NO_RESEND)
        label = f"{what} on cloud {self.name}"
        retries = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        lean = self._lean(service) if callable(self._lean) and data is None \
            and not headers else None

        def send() -> Any:
            if lean is not None:
                return lean.send(method, service, path, json=body, params=params)
            return getattr(self.conn, service).request(path, method, **kwargs)

        def once() -> Any:
            try:
                # The proxy inside call(): a service missing from the catalog is a final error.
                resp = call(label, send)
            except TransferError as exc:
                return Failed(exc, retryable=retries and transient(exc))
            if resp.status_code == 404 and missing_ok:
                return None
            if resp.status_code not in ok:
                error = answer_error(label, resp)
                return Failed(error, retryable=retries and transient(error),
                              retry_after=resp.headers.get("Retry-After"))
            if resp.status_code == 204 or not resp.content:
                return None
            try:
                return resp.json()
            except ValueError as exc:
                raise TransferError(f"{label}: the answer is not JSON", retryable=True) from exc

        def note(attempt: int, delay: float, error: BaseException) -> None:
            log.info("%s (retry %d/%d in %.2fs)", error, attempt, self.retry.retries, delay)

        return call_with_retries(once, self.retry, on_retry=note)

    def pages(self, service: str, path: str, key: str, what: str,
              params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a listing, following Glance's ``next`` and Cinder's
        ``<key>_links``."""
        url: str | None = path
        query: Mapping[str, Any] | None = params
        for _ in range(MAX_PAGES):
            if url is None:
                return
            page = self.request(service, "GET", url, what, params=query) or {}
            yield from (item for item in page.get(key) or [] if isinstance(item, dict))
            url, query = _next_link(page, key), None
        raise TransferError(f"{what} on cloud {self.name}: more than {MAX_PAGES} pages",
                            retryable=False)

    # -- Glance -----------------------------------------------------------------------------
    def image(self, image_id: str) -> dict[str, Any] | None:
        found = self.request("image", "GET", f"images/{image_id}", f"reading image {image_id}",
                             missing_ok=True)
        return found if isinstance(found, dict) else None

    def images_named(self, name: str) -> list[dict[str, Any]]:
        return list(self.pages("image", "images", "images", f"listing images named {name!r}",
                               {"name": name}))

    def create_image(self, body: Mapping[str, Any]) -> dict[str, Any]:
        created = self.request("image", "POST", "images",
                               f"creating image {body.get('name')!r}", body=dict(body),
                               ok=(201,))
        if not isinstance(created, dict) or not created.get("id"):
            raise TransferError(f"creating image {body.get('name')!r} on cloud {self.name}: "
                                "no image in the answer", retryable=True)
        return created

    def delete_image(self, image_id: str) -> None:
        """Delete; an image already gone is fine."""
        self.request("image", "DELETE", f"images/{image_id}", f"deleting image {image_id}",
                     missing_ok=True)

    # -- Cinder -----------------------------------------------------------------------------
    def volume(self, volume_id: str) -> dict[str, Any] | None:
        found = self.request("block_storage", "GET", f"volumes/{volume_id}",
                             f"reading volume {volume_id}", missing_ok=True)
        vol = found.get("volume") if isinstance(found, dict) else None
        return vol if isinstance(vol, dict) else None

    def volumes_with_metadata(self, key: str, value: str) -> list[dict[str, Any]]:
        """The volumes (of the connection's project) whose metadata has ``key: value``:
        filtered by Cinder (``metadata`` filter) and again here, for servers that ignore it."""
        query = {"metadata": json.dumps({key: value})}
        return [v for v in self.pages("block_storage", "volumes/detail", "volumes",
                                      f"listing volumes with {key}={value}", query)
                if (v.get("metadata") or {}).get(key) == value]

    def create_volume(self, body: Mapping[str, Any]) -> dict[str, Any]:
        created = self.request("block_storage", "POST", "volumes",
                               f"creating volume {body.get('name')!r}",
                               body={"volume": dict(body)}, ok=(200, 202))
        vol = created.get("volume") if isinstance(created, dict) else None
        if not isinstance(vol, dict) or not vol.get("id"):
            raise TransferError(f"creating volume {body.get('name')!r} on cloud {self.name}: "
                                "no volume in the answer", retryable=True)
        return vol

    def delete_volume(self, volume_id: str) -> None:
        self.request("block_storage", "DELETE", f"volumes/{volume_id}",
                     f"deleting volume {volume_id}", missing_ok=True)

    def volume_action(self, volume_id: str, action: str, params: Any,
                      ok: tuple[int, ...] = (200, 202), missing_ok: bool = False,
                      idempotent: bool = False) -> Any:
        """``POST volumes/{id}/action``; ``idempotent`` for an action that sets a value
        (retried like a PUT), not for one that makes something."""
        return self.request("block_storage", "POST", f"volumes/{volume_id}/action",
                            f"{action} of volume {volume_id}", body={action: params}, ok=ok,
                            missing_ok=missing_ok, idempotent=idempotent)

    def volume_type(self, ref: str) -> dict[str, Any] | None:
        found = self.request("block_storage", "GET", f"types/{ref}",
                             f"reading volume type {ref}", missing_ok=True)
        vtype = found.get("volume_type") if isinstance(found, dict) else None
        return vtype if isinstance(vtype, dict) else None


def _next_link(page: Mapping[str, Any], key: str) -> str | None:
    nxt = page.get("next")  # Glance: a path below the version root ("/v2/images?marker=")
    if isinstance(nxt, str) and nxt:
        return nxt.split("/v2/", 1)[1] if "/v2/" in nxt else nxt
    for link in page.get(f"{key}_links") or []:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            return str(link["href"])
    return None
