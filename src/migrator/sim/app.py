"""The aiohttp application of one cloud: call record, faults, authentication, error shapes,
the admin endpoint (``/_sim/...``) and every service's routes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

import migrator.sim.cinder
import migrator.sim.glance
import migrator.sim.keystone
import migrator.sim.neutron
import migrator.sim.nova
from migrator.sim.cloud import SimCloud
from migrator.sim.faults import FaultSpecError
from migrator.sim.http import (
    AUTH_KEY,
    EFFECTS_KEY,
    PUBLIC_URL,
    DroppedConnection,
    SimHTTPError,
    error_response,
    json_response,
)
from migrator.sim.request_id import add_request_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLOUD: web.AppKey[SimCloud] = web.AppKey("cloud", SimCloud)
# Imported as modules (not ``from migrator.sim import ...``) so that the package's namespace
# needs no eager imports.
SERVICES = (
    migrator.sim.keystone,
    migrator.sim.glance,
    migrator.sim.cinder,
    migrator.sim.nova,
    migrator.sim.neutron,
)


def route_name(request: web.Request) -> str:
    """``METHOD /route/{template}``: the key the call record counts under."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else request.path
    return f"{request.method} {template}"


def resolved(request: web.Request, route: str) -> str:
    """``route`` with its ``{kind}`` filled in: Keystone serves projects, users, domains and
    roles on one route template, whose calls a count per collection must tell apart."""
    kind = request.match_info.get("kind")
    return route.replace("{kind}", kind) if kind and "{kind}" in route else route


@web.middleware
async def core_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith("/_sim/"):
        return await handler(request)
    cloud = request.app[CLOUD]
    cloud.last_request = time.monotonic()
    route = route_name(request)
    cloud.calls[route] += 1
    cloud.resolved_calls[resolved(request, route)] += 1
    effects = cloud.faults.effects_for(request.method, path)
    if effects is not None:
        request[EFFECTS_KEY] = effects
        if effects.latency_ms:
            await asyncio.sleep(effects.latency_ms / 1000)
        if effects.status is not None:
            headers = {}
            if effects.retry_after is not None:
                headers["Retry-After"] = str(effects.retry_after)
            return error_response(path, effects.status, "Simulated fault", headers=headers)
    real_handler = getattr(request.match_info, "handler", None)
    is_public = getattr(real_handler, "_sim_public", False)
    ctx = cloud.validate_token(request.headers.get("X-Auth-Token"))
    if ctx is not None:
        request[AUTH_KEY] = ctx
    elif not is_public and request.match_info.http_exception is None:
        return error_response(
            path, 401, "The request you have made requires authentication."
        )
    try:
        response = await handler(request)
    except SimHTTPError as exc:
        return error_response(
            path, exc.status, exc.message, neutron_type=exc.neutron_type, headers=exc.headers
        )
    except DroppedConnection:
        return web.Response(status=500)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(path, exc.status, exc.reason)
        raise
    if (effects is not None and effects.drop_after_bytes is not None
            and isinstance(response, web.Response) and not response.prepared):
        # An ordinary (JSON) answer cut off: the request was carried out, the client never
        # hears of it (the worst case for a create). Streamed bodies drop mid-body instead.
        body = response.body if isinstance(response.body, bytes) else b""
        return await _cut_after(request, response, body[: effects.drop_after_bytes])
    return response


async def _cut_after(request: web.Request, response: web.Response, head: bytes
                     ) -> web.StreamResponse:
    """Send the status line, headers and ``head`` of the body, then drop the connection."""
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    with contextlib.suppress(ConnectionError):
        await stream.prepare(request)
        if head:
            await stream.write(head)
    transport = request.transport
    if transport is not None:
        transport.abort()
    return stream


# -- admin endpoint ---------------------------------------------------------------------------
async def get_calls(request: web.Request) -> web.Response:
    """Calls per route template; with ``?resolved=1``, per template with its ``{kind}``
    filled in (see resolved)."""
    cloud = request.app[CLOUD]
    calls = cloud.resolved_calls if request.query.get("resolved") else cloud.calls
    return json_response({"calls": dict(calls)})


async def reset_calls(request: web.Request) -> web.Response:
    request.app[CLOUD].calls.clear()
    request.app[CLOUD].resolved_calls.clear()
    return web.Response(status=204)


async def get_faults(request: web.Request) -> web.Response:
    return json_response({"faults": [r.to_dict() for r in request.app[CLOUD].faults.rules]})


async def add_faults(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD]
    body = await request.json()
    raw = body.get("faults", [body]) if isinstance(body, dict) else body
    try:
        rules = [cloud.faults.add(r) for r in raw]
    except FaultSpecError as exc:
        return json_response({"error": str(exc)}, status=400)
    return json_response({"faults": [r.to_dict() for r in rules]}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[CLOUD].faults.clear()
    return web.Response(status=204)


async def expire_tokens(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD]
    body = await request.json() if request.can_read_body else {}
    if "ttl" in body:
        cloud.token_ttl = float(body["ttl"])
    return json_response({"expired": cloud.expire_tokens(), "ttl": cloud.token_ttl})


async def summary(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD]
    counts = {name: len(items) for name, items in cloud.state.data.items()}
    return json_response({"cloud": cloud.name, "profile": cloud.profile.name,
                          "counts": counts})


async def save(request: web.Request) -> web.Response:
    request.app[CLOUD].state.save()
    return web.Response(status=204)


def build_app(cloud: SimCloud) -> web.Application:
    app = web.Application(middlewares=[core_middleware], client_max_size=1 << 30)
    app[CLOUD] = cloud
    if cloud.public_url:
        app[PUBLIC_URL] = cloud.public_url
    app.on_response_prepare.append(add_request_id(cloud.profile))
    app.router.add_get("/_sim/calls", get_calls)
    app.router.add_delete("/_sim/calls", reset_calls)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/faults", add_faults)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_post("/_sim/tokens/expire", expire_tokens)
    app.router.add_get("/_sim/summary", summary)
    app.router.add_post("/_sim/save", save)
    for service in SERVICES:
        service.add_routes(app.router, cloud)
    return app
