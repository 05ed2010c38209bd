"""Microversion negotiation as Nova and Cinder do it.

A request names its version in ``OpenStack-API-Version: <service> X.Y`` (Nova also reads the
older ``X-OpenStack-Nova-API-Version: X.Y``); ``latest`` means the maximum. No header means the
minimum. A version outside the range is refused with 406, a malformed one with 400. The answer
echoes the version that was used, so a client can tell what it got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from migrator.sim.http import SimHTTPError
from migrator.sim.profiles import microversion_tuple

Version = tuple[int, int]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_KEY: web.RequestKey[Version] = web.RequestKey("microversion")


@dataclass(frozen=True)
class MicroversionRange:
    """What one service accepts: ``service`` is the token in the header (compute, volume)."""

    service: str
    minimum: str
    maximum: str
    # Header names the service reads, in order of preference.
    legacy_header: str | None = None
    # Liberty's Nova predates the generic header (it came with 2.27): it reads only the legacy.
    generic_header: bool = True

    def _requested(self, request: web.Request) -> str | None:
        if self.generic_header:
            raw = request.headers.get("OpenStack-API-Version")
            if raw:
                for part in raw.split(","):
                    service, _, value = part.strip().partition(" ")
                    if service.lower() == self.service and value.strip():
                        return value.strip()
        if self.legacy_header:
            legacy = request.headers.get(self.legacy_header)
            if legacy:
                return legacy.strip()
        return None

    def negotiate(self, request: web.Request) -> Version:
        """The version this request is served at; stored on the request for the handler."""
        raw = self._requested(request)
        low, high = microversion_tuple(self.minimum), microversion_tuple(self.maximum)
        if raw is None:
            version = low
        elif raw.lower() == "latest":
            version = high
        else:
            try:
                major, dot, minor = raw.partition(".")
                if not dot:
                    raise ValueError(raw)
                version = (int(major), int(minor))
            except ValueError as exc:
                raise SimHTTPError(
                    400, f"API Version String {raw} is of invalid format. Must be of format "
                         "MajorNum.MinorNum.") from exc
            if not low <= version <= high:
                raise SimHTTPError(
                    406, f"Version {raw} is not supported by the API. Minimum is "
                         f"{self.minimum} and maximum is {self.maximum}.")
        request[REQUEST_KEY] = version
        return version

    def headers(self, version: Version) -> dict[str, str]:
        text = f"{version[0]}.{version[1]}"
        out: dict[str, str] = {}
        vary = []
        if self.generic_header:
            out["OpenStack-API-Version"] = f"{self.service} {text}"
            vary.append("OpenStack-API-Version")
        if self.legacy_header:
            out[self.legacy_header] = text
            vary.append(self.legacy_header)
        out["Vary"] = ", ".join(vary)
        return out

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` served at the negotiated version, echoed on every answer (errors too)."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            extra = self.headers(self.negotiate(request))
            try:
                response = await handler(request)
            except SimHTTPError as exc:
                exc.headers.update(extra)
                raise
            response.headers.update(extra)
            return response

        return wrapped


def version_of(request: web.Request) -> Version:
    """The negotiated version (the minimum of the v2 world, 2.0, when none was negotiated)."""
    value = request.get(REQUEST_KEY)
    return value if value is not None else (2, 0)


def at_least(request: web.Request, wanted: str) -> bool:
    return version_of(request) >= microversion_tuple(wanted)
