"""Helpers shared by the simulated services: errors in each service's own shape, JSON
responses, pagination with each service's next-link convention, the caller's identity, and
body streaming through the fault effects (bandwidth, dropped connection, corrupted byte)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from migrator import jsoncodec
from migrator.sim.faults import Effects

# Which error body a path prefix answers with.
STYLE_BY_PREFIX = {
    "/identity": "keystone",
    "/image": "glance",
    "/volume": "cinder",
    "/compute": "nova",
    "/network": "neutron",
}
NOVA_ERROR_KEYS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    409: "conflictingRequest",
    413: "overLimit",
    429: "overLimit",
}
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class SimHTTPError(Exception):
    """Raised by a route; rendered in the shape of the service that owns the path."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        neutron_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.neutron_type = neutron_type
        self.headers = headers or {}


def style_for(path: str) -> str:
    for prefix, style in STYLE_BY_PREFIX.items():
        if path.startswith(prefix):
            return style
    return "keystone"


def error_response(
    path: str,
    status: int,
    message: str,
    *,
    neutron_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    style = style_for(path)
    title = TITLES.get(status, "Error")
    body: Any
    if style == "keystone":
        body = {"error": {"code": status, "message": message, "title": title}}
    elif style in ("nova", "cinder"):
        key = NOVA_ERROR_KEYS.get(status, "computeFault" if style == "nova" else "badRequest")
        body = {key: {"code": status, "message": message}}
    elif style == "neutron":
        body = {"NeutronError": {"type": neutron_type or title.replace(" ", ""),
                                 "message": message, "detail": ""}}
    else:  # glance answers with a small text body
        return web.Response(status=status, text=f"{status} {title}\n\n{message}\n",
                            headers=headers, content_type="text/plain")
    return json_response(body, status=status, headers=headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    # orjson through jsoncodec: the standard library's encoder was a fifth of the simulator's
    # CPU during a 10,000-tenant discovery (pages of 1,000 records).
    return web.Response(
        status=status,
        body=jsoncodec.compact(body).encode(),
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SimHTTPError(400, f"Malformed request body: {exc}") from exc
    if not isinstance(body, dict):
        raise SimHTTPError(400, "Malformed request body: expected a JSON object")
    return body


def require(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise SimHTTPError(400, f"Missing or malformed '{key}' in request body")
    return value


# The cloud's advertised base URL when it is not the listening address (set by build_app).
PUBLIC_URL: web.AppKey[str] = web.AppKey("public_url", str)


def origin(request: web.Request) -> str:
    """What links are built on: the cloud's public URL when it has one (a proxy or a DNS name
    in front, as a real service's ``public_endpoint`` setting), else the address the request
    reached, scheme included."""
    return request.app.get(PUBLIC_URL) or str(request.url.origin())


def public(handler: Any) -> Any:
    """Mark a route that answers without a token (version documents, token creation)."""
    handler._sim_public = True
    return handler


# -- identity of the caller -------------------------------------------------------------------
@dataclass
class AuthContext:
    token: str
    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    domain_id: str | None
    roles: list[str] = field(default_factory=list)
    expires_at: float = 0.0

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


# Typed per-request storage (aiohttp warns on bare string keys).
AUTH_KEY = web.RequestKey("auth", AuthContext)
EFFECTS_KEY = web.RequestKey("effects", Effects)


def auth_of(request: web.Request) -> AuthContext:
    ctx = request.get(AUTH_KEY)
    if ctx is None:
        raise SimHTTPError(401, "The request you have made requires authentication.")
    return ctx


def require_admin(request: web.Request) -> AuthContext:
    ctx = auth_of(request)
    if not ctx.is_admin:
        raise SimHTTPError(403, "You are not authorized to perform the requested action.")
    return ctx


# -- pagination -------------------------------------------------------------------------------
def parse_limit(request: web.Request, default: int | None, maximum: int = 1000) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError as exc:
        raise SimHTTPError(400, f"Invalid limit {raw!r}") from exc
    if limit < 0:
        raise SimHTTPError(400, "limit must be >= 0")
    return min(limit, maximum)


def page(
    items: list[dict[str, Any]], request: web.Request, *, default_limit: int | None,
    maximum: int = 1000, key: str = "id", position: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page after ``?marker=`` of at most ``?limit=`` items; the next marker or None.
    ``position`` (each item's index by ``key``, kept with a cached listing) spares the scan
    for the marker."""
    marker = request.query.get("marker")
    start = 0
    if marker and position is not None:
        if marker not in position:
            raise SimHTTPError(400, f"Marker {marker} could not be found.")
        start = position[marker] + 1
    elif marker:
        for i, item in enumerate(items):
            if item.get(key) == marker:
                start = i + 1
                break
        else:
            raise SimHTTPError(400, f"Marker {marker} could not be found.")
    limit = parse_limit(request, default_limit, maximum)
    if limit is None:
        return items[start:], None
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return chunk, (chunk[-1][key] if more and chunk else None)


def next_href(request: web.Request, marker: str) -> str:
    query = {k: v for k, v in request.query.items() if k != "marker"}
    query["marker"] = marker
    return f"{origin(request)}{request.path}?{urlencode(query)}"


# -- streaming bodies through the fault effects ------------------------------------------------
class DroppedConnection(Exception):
    """The simulated network cut the connection mid-body."""


async def stream_response(
    request: web.Request,
    response: web.StreamResponse,
    chunks: AsyncIterator[bytes] | Iterable[bytes],
) -> web.StreamResponse:
    """Write a body chunk by chunk, applying the request's fault effects."""
    effects: Effects | None = request.get(EFFECTS_KEY)
    await response.prepare(request)
    sent = 0
    started = time.monotonic()
    iterator = chunks if isinstance(chunks, AsyncIterator) else _aiter(chunks)
    async for piece in iterator:
        data = piece
        if effects is not None:
            if effects.corrupt_offset is not None and sent <= effects.corrupt_offset < sent + len(
                data
            ):
                at = effects.corrupt_offset - sent
                data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
            if effects.drop_after_bytes is not None and sent + len(data) > effects.drop_after_bytes:
                keep = effects.drop_after_bytes - sent
                if keep > 0:
                    await response.write(data[:keep])
                _drop(request)
                raise DroppedConnection()
        await response.write(data)
        sent += len(data)
        if effects is not None and effects.bandwidth:
            await _throttle(sent, started, effects.bandwidth)
    await response.write_eof()
    return response


async def request_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body, decoded from chunked or Content-Length framing, through the faults."""
    effects: Effects | None = request.get(EFFECTS_KEY)
    received = 0
    started = time.monotonic()
    async for piece in request.content.iter_chunked(1 << 20):
        if effects is not None:
            if effects.drop_after_bytes is not None and received + len(
                piece
            ) > effects.drop_after_bytes:
                _drop(request)
                raise DroppedConnection()
            if effects.bandwidth:
                await _throttle(received + len(piece), started, effects.bandwidth)
        received += len(piece)
        yield piece


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in chunks:
        yield piece


async def _throttle(done: int, started: float, rate: int) -> None:
    ahead = done / rate - (time.monotonic() - started)
    if ahead > 0:
        await asyncio.sleep(ahead)


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
