"""One simulated cloud: its profile, state, tokens, faults and call record."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrator.sim.content import Digest, content_chunks, digest_of
from migrator.sim.faults import FaultBook
from migrator.sim.http import AuthContext
from migrator.sim.profiles import Profile
from migrator.sim.state import SimState

DEFAULT_TOKEN_TTL = 3600.0
# Catalog types -> the service names of SimCloud.services.
CATALOG_SERVICES = {"volume": "volume", "volumev2": "volume", "volumev3": "volume",
                    "block-storage": "volume"}
SERVICES = ("identity", "image", "volume", "compute", "network")
REGION = "RegionOne"


class SimCloud:
    """A cloud served on ``host:port`` with the quirks of ``profile``."""

    def __init__(
        self,
        name: str,
        profile: Profile,
        host: str,
        port: int,
        data_dir: Path,
        *,
        fault_seed: int = 0,
        tls: bool = False,
        public_url: str | None = None,
    ) -> None:
        self.name = name
        self.profile = profile
        self.host = host
        self.port = port
        self.tls = tls
        # What the catalog, clouds.yaml and every link advertise instead of the listening
        # address (a proxy or a DNS name in front); None: the listening address.
        self.public_url = public_url.rstrip("/") if public_url else None
        self.data_dir = data_dir
        self.blob_dir = data_dir / f"blobs-{name}"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.state = SimState(data_dir / f"state-{name}.json")
        self.faults = FaultBook(fault_seed)
        self.calls: Counter[str] = Counter()
        # The same calls with Keystone's {kind} route placeholder filled in (app.resolved).
        self.resolved_calls: Counter[str] = Counter()
        # Monotonic time of the latest API request: the saver waits for a pause in traffic.
        self.last_request = 0.0
        # The services its catalog lists (identity, image, volume, compute, network); None:
        # all. A cloud of Keystone, Glance and Cinder only: {"identity", "image", "volume"}.
        self.services: frozenset[str] | None = None
        self.tokens: dict[str, AuthContext] = {}
        self.token_ttl = DEFAULT_TOKEN_TTL
        self.loop: asyncio.AbstractEventLoop | None = None
        self._digest_cache: dict[str, Digest] = {}

    # -- addresses ---------------------------------------------------------------------------
    @property
    def listen_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The advertised address: the public URL when one is set, else the listening one."""
        return self.public_url or self.listen_url

    def catalog_entries(self, project_id: str | None) -> list[dict[str, Any]]:
        """(type, name, url) of every service, as the catalog of a token scoped to a project."""
        base = self.base_url
        pid = project_id or ""
        entries: list[dict[str, Any]] = [
            {"type": "identity", "name": "keystone", "url": f"{base}/identity"},
            {"type": "image", "name": "glance", "url": f"{base}/image"},
            {"type": "network", "name": "neutron", "url": f"{base}/network"},
        ]
        if self.profile.nova_url_has_project:
            entries.append({"type": "compute", "name": "nova",
                            "url": f"{base}/compute/v2.1/{pid}"})
        else:
            entries.append({"type": "compute", "name": "nova", "url": f"{base}/compute/v2.1"})
        for version in self.profile.cinder_versions:
            service_type = {"v1": "volume", "v2": "volumev2", "v3": "block-storage"}[version]
            name = "cinder" if version == "v1" else f"cinder{version}"
            entries.append({"type": service_type, "name": name,
                            "url": f"{base}/volume/{version}/{pid}"})
            if version == "v3":
                entries.append({"type": "volumev3", "name": "cinderv3",
                                "url": f"{base}/volume/{version}/{pid}"})
        if self.services is not None:
            entries = [e for e in entries if e["type"] == "identity"
                       or CATALOG_SERVICES.get(e["type"], e["type"]) in self.services]
        return entries

    # -- tokens ------------------------------------------------------------------------------
    def issue_token(self, ctx_fields: dict[str, Any]) -> AuthContext:
        token = secrets.token_hex(16)
        ctx = AuthContext(token=token, expires_at=time.time() + self.token_ttl, **ctx_fields)
        self.tokens[token] = ctx
        return ctx

    def validate_token(self, token: str | None) -> AuthContext | None:
        if not token:
            return None
        ctx = self.tokens.get(token)
        if ctx is None:
            return None
        if ctx.expires_at <= time.time():
            del self.tokens[token]
            return None
        return ctx

    def expire_tokens(self) -> int:
        count = len(self.tokens)
        self.tokens.clear()
        return count

    # -- image content -----------------------------------------------------------------------
    def digest(self, spec: dict[str, Any]) -> Digest:
        """Hashes of an image's content, computed once per content spec."""
        key = repr(sorted(spec.items()))
        if key not in self._digest_cache:
            self._digest_cache[key] = digest_of(spec)
        return self._digest_cache[key]

    def chunks(self, spec: dict[str, Any], offset: int = 0, stop: int | None = None) -> Any:
        return content_chunks(spec, offset, stop)

    def blob_path(self, image_id: str) -> Path:
        return self.blob_dir / image_id

    # -- asynchrony --------------------------------------------------------------------------
    def later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop after ``delay`` seconds (a status change, say)."""
        loop = self.loop or asyncio.get_running_loop()
        if delay <= 0:
            loop.call_soon(fn)
        else:
            loop.call_later(delay, fn)
