"""Request ids on answers, as each service's middleware sends them: ``req-<uuid4>``.

Checked against the services' paste pipelines and middleware:

- modern: every service runs oslo.middleware's ``RequestId`` on every route, version
  documents included (``x-openstack-request-id``); Nova's ``ComputeReqIdMiddleware`` sends the
  same id again as ``x-compute-request-id``.
- Liberty (liberty-eol): Keystone, Neutron and Cinder run ``RequestId`` on their versioned
  APIs (``x-openstack-request-id``), Glance's context middleware sets the same header, and
  Nova's own ``ComputeReqIdMiddleware`` sends only ``x-compute-request-id``. The unversioned
  version documents (``GET /``, and Glance's ``/versions``) are answered before those
  middlewares run: no id.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from migrator.sim.profiles import Profile

OPENSTACK = "x-openstack-request-id"
COMPUTE = "x-compute-request-id"
OnPrepare = Callable[[web.Request, web.StreamResponse], Awaitable[None]]
# The unversioned version documents of each service (after the trailing slash is dropped).
VERSION_ROOTS = frozenset({"/identity", "/image", "/image/versions", "/volume", "/compute",
                           "/network"})


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def request_id_headers(profile: Profile, path: str, request_id: str) -> dict[str, str]:
    """The request-id headers an answer to ``path`` carries on a cloud of ``profile``."""
    compute = path.startswith("/compute")
    if profile.name == "liberty":
        if path.rstrip("/") in VERSION_ROOTS:
            return {}
        return {COMPUTE: request_id} if compute else {OPENSTACK: request_id}
    if compute:
        return {OPENSTACK: request_id, COMPUTE: request_id}
    return {OPENSTACK: request_id}


def add_request_id(profile: Profile) -> OnPrepare:
    """An ``on_response_prepare`` handler: every answer (errors, streamed bodies, the ones
    the fault rules make) gets its headers just before they are sent."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/_sim/"):
            return
        for name, value in request_id_headers(profile, request.path,
                                              new_request_id()).items():
            response.headers[name] = value

    return on_prepare

