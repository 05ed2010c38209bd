"""Serving one or more simulated clouds from one process, each on its own port.

``SimServer`` runs an asyncio loop, either in the foreground (``migrator sim serve``) or in a
background thread (tests, benchmarks, ``migrator demo``). It writes a clouds.yaml naming every
cloud, with the API-version keys each profile needs, that openstacksdk uses as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from aiohttp import web

from migrator.bulk_gc import relaxed_gc
from migrator.sim.app import build_app
from migrator.sim.cloud import REGION, SimCloud
from migrator.sim.profiles import PROFILES, top_level_parent
from migrator.sim.seed import apply_faults, apply_seed, load_seed
from migrator.sim.state import Record, SimState, new_hex_id
from migrator.sim.tls import TlsFiles, ensure_tls_files, server_context

ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"


@dataclass(frozen=True)
class SavePolicy:
    """When the saver writes a changed state: once no request has arrived for ``quiet``
    seconds, or once the oldest unsaved change is ``max_delay`` seconds old (a bound on how
    stale the file gets under unbroken traffic); always when the server stops.

    Why: a save holds the event loop for the whole encode (~0.5 s for a 10,000-tenant cloud).
    Saving one second after each change put it in the middle of a discovery, whose first
    listing creates the admin project's default security group; the clients waited."""

    quiet: float = 1.0
    max_delay: float = 30.0
    check_every: float = 0.25

    def due(self, state: SimState, now: float, last_request: float) -> bool:
        if not state.dirty:
            return False
        if now - last_request >= self.quiet:
            return True
        return state.dirty_since is not None and now - state.dirty_since >= self.max_delay


@dataclass(frozen=True)
class CloudSpec:
    """``name:profile:port`` (port 0 picks a free one), optionally ``name:profile:host:port``.
    ``public_url``: what the catalog and clouds.yaml advertise instead of the listening
    address (a proxy or a DNS name in front)."""

    name: str
    profile: str
    port: int = 0
    host: str = "127.0.0.1"
    public_url: str | None = None

    @classmethod
    def parse(cls, text: str) -> CloudSpec:
        parts = text.split(":")
        if len(parts) < 2:
            raise ValueError(f"cloud {text!r}: expected NAME:PROFILE[:PORT] or "
                             "NAME:PROFILE:HOST:PORT")
        name, profile = parts[0], parts[1]
        if profile not in PROFILES:
            raise ValueError(f"cloud {text!r}: unknown profile {profile!r} "
                             f"(known: {', '.join(sorted(PROFILES))})")
        host = "127.0.0.1"
        port_text = "0"
        if len(parts) == 3:
            port_text = parts[2]
        elif len(parts) > 3:
            port_text = parts[-1]
            host = ":".join(parts[2:-1]).strip("[]")
        try:
            port = int(port_text)
        except ValueError as exc:
            raise ValueError(f"cloud {text!r}: port {port_text!r} is not a number") from exc
        return cls(name=name, profile=profile, port=port, host=host)


def bootstrap(cloud: SimCloud) -> None:
    """Give an empty cloud its default domain, base roles and an admin user and project."""
    state = cloud.state
    if state.get("domains", "default") is None:
        state.put("domains", {"id": "default", "name": "Default", "enabled": True,
                              "description": "The default domain"})
    role_names = ["admin", "_member_"] if cloud.profile.name == "liberty" else [
        "admin", "member", "reader"]
    for role in role_names:
        if state.find_one("roles", name=role) is None:
            state.put("roles", {"id": new_hex_id(), "name": role, "domain_id": None})
    project = state.find_one("projects", name=ADMIN_PROJECT, domain_id="default")
    if project is None:
        project = state.put("projects", {
            "id": new_hex_id(), "name": ADMIN_PROJECT, "domain_id": "default",
            "description": "Bootstrap project for initializing the cloud.", "enabled": True,
            "parent_id": top_level_parent(cloud.profile, "default"), "is_domain": False})
    user = state.find_one("users", name=ADMIN_USER, domain_id="default")
    if user is None:
        user = state.put("users", {"id": new_hex_id(), "name": ADMIN_USER,
                                   "domain_id": "default", "enabled": True,
                                   "password": secrets.token_urlsafe(12),
                                   "default_project_id": project["id"]})
    admin_role = state.find_one("roles", name="admin")
    assert admin_role is not None
    if state.find_one("role_assignments", user_id=user["id"], project_id=project["id"],
                      role_id=admin_role["id"]) is None:
        state.put("role_assignments", {"id": new_hex_id(), "user_id": user["id"],
                                       "project_id": project["id"],
                                       "role_id": admin_role["id"]})


def clouds_yaml_entry(cloud: SimCloud, user: Record, project_name: str,
                      cacert: Path | None = None) -> dict[str, Any]:
    """A clouds.yaml entry with the API versions the profile needs (see openstack-notes);
    ``cacert`` for a cloud served over HTTPS by the simulator's own CA."""
    base = cloud.base_url
    liberty = cloud.profile.name == "liberty"
    entry: dict[str, Any] = {
        "auth_type": "password",
        "auth": {
            "auth_url": f"{base}/identity/v3",
            "username": user["name"],
            "password": user["password"],
            "project_name": project_name,
            "user_domain_id": user.get("domain_id", "default"),
            "project_domain_id": "default",
        },
        "region_name": REGION,
        "interface": "public",
        "identity_api_version": "3",
        "image_api_version": "2",
        "network_api_version": "2",
        "block_storage_api_version": "2" if liberty else "3",
        "volume_api_version": "2" if liberty else "3",
        "compute_api_version": "2",
    }
    if cacert is not None:
        entry["cacert"] = str(cacert)
    return entry


class SimServer:
    """Serves clouds until stopped (``start()``: in a thread)."""

    # Under relaxed_gc: a 10,000-tenant seed builds millions of dicts that all live on, and
    # the collector's full passes over them were ~1.5 s of the ~7.5 s start.
    @relaxed_gc()
    def __init__(self, specs: Iterable[CloudSpec], data_dir: Path | None = None,
                 *, seed: Path | None = None, fault_seed: int = 0,
                 save_policy: SavePolicy | None = None,
                 freeze_loaded_state: bool = False, tls: bool = False,
                 tls_client_ca: Path | None = None) -> None:
        """Clouds saved under ``data_dir`` come back as they were; a cloud with no saved
        state is seeded from the ``seed`` file's entry for it (faults are always re-read).
        ``freeze_loaded_state`` (for a process that only serves, ``migrator sim serve``) takes
        the loaded clouds out of the garbage collector's passes. ``tls`` serves every cloud
        over HTTPS with a certificate of the simulator's own CA (sim/tls.py), which
        clouds.yaml names as ``cacert``; ``tls_client_ca`` also requires client certificates
        signed by that CA."""
        seed_doc = load_seed(seed) if seed is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="migrator-sim-")
            data_dir = Path(self._tmp.name)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.specs = list(specs)
        self.save_policy = save_policy or SavePolicy()
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError("each simulated cloud needs its own name")
        self.tls_files: TlsFiles | None = None
        self.tls_client_ca = tls_client_ca
        if tls:
            self.tls_files = ensure_tls_files(self.data_dir, _certificate_names(self.specs))
        self.clouds: dict[str, SimCloud] = {}
        for spec in self.specs:
            cloud = SimCloud(spec.name, PROFILES[spec.profile], spec.host, spec.port,
                             self.data_dir, fault_seed=fault_seed, tls=tls,
                             public_url=spec.public_url)
            restored = cloud.state.load()
            bootstrap(cloud)
            if seed_doc is not None and seed is not None:
                if restored:
                    apply_faults(cloud, seed_doc, seed)
                else:
                    apply_seed(cloud, seed_doc, seed)
            self.clouds[spec.name] = cloud
            # Saved now, before anyone is served: the first save of a large seed holds the event
            # loop, which the first clients would wait.
            if cloud.state.dirty:
                cloud.state.save()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        if freeze_loaded_state:
            # The loaded clouds live as long as the serving process: frozen out of the
            # collector's view, a full collection no longer walks their millions of objects
            # (0.3 s each at 10,000 tenants, set off about once per discovery by a large
            # listing). Garbage made so far is collected first so that nothing unreachable is
            # frozen for good. gc.freeze() is process-wide: not for a server started inside
            # another program (the demo, the tests), whose own objects it would freeze too.
            gc.collect()
            gc.freeze()

    @property
    def clouds_yaml(self) -> Path:
        return self.data_dir / "clouds.yaml"

    @property
    def cacert(self) -> Path | None:
        """The CA certificate clients trust the clouds with (None: plain HTTP)."""
        return self.tls_files.ca_cert if self.tls_files is not None else None

    def cloud(self, name: str) -> SimCloud:
        return self.clouds[name]

    @property
    def thread_id(self) -> int | None:
        """The serving thread's id once started (its CPU clock is the simulator's own work,
        see benchmarks/bench_sim_scaling.py)."""
        return self._thread.ident if self._thread is not None else None

    # -- lifecycle ---------------------------------------------------------------------------
    async def _start_sites(self) -> None:
        self.loop = asyncio.get_running_loop()
        for cloud in self.clouds.values():
            cloud.loop = self.loop
            runner = web.AppRunner(build_app(cloud), access_log=None,
                                   handler_cancellation=True)
            await runner.setup()
            context = None
            if self.tls_files is not None:
                context = server_context(self.tls_files, client_ca=self.tls_client_ca)
            site = web.TCPSite(runner, cloud.host, cloud.port, reuse_address=True,
                               ssl_context=context)
            await site.start()
            if cloud.port == 0:  # the bound socket tells us the port the OS picked
                sockets = getattr(site._server, "sockets", None) or []
                cloud.port = sockets[0].getsockname()[1]
            self._runners.append(runner)
        self.write_clouds_yaml()

    async def _saver(self) -> None:
        policy = self.save_policy
        while True:
            await asyncio.sleep(policy.check_every)
            # The clouds share one loop: a request to any of them defers every save.
            last_request = max(cloud.last_request for cloud in self.clouds.values())
            now = time.monotonic()
            for cloud in self.clouds.values():
                if policy.due(cloud.state, now, last_request):
                    cloud.state.save()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self._start_sites()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            raise
        saver = asyncio.create_task(self._saver())
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
            for runner in self._runners:
                await runner.cleanup()
            self._runners.clear()
            for cloud in self.clouds.values():
                cloud.state.save()

    def start(self) -> SimServer:
        """Serve in a background thread; returns once every port is listening."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name="migrator-sim", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop and return its result (for tests/seeding)."""
        if self.loop is None or self._thread is None:
            return fn(*args)
        fut = asyncio.run_coroutine_threadsafe(_call(fn, *args), self.loop)
        return fut.result(60)

    # -- clouds.yaml -------------------------------------------------------------------------
    def write_clouds_yaml(self) -> Path:
        clouds: dict[str, Any] = {}
        for cloud in self.clouds.values():
            user = cloud.state.find_one("users", name=ADMIN_USER, domain_id="default")
            assert user is not None
            clouds[cloud.name] = clouds_yaml_entry(cloud, user, ADMIN_PROJECT, self.cacert)
            # One entry per seeded tenant user too, for clouds whose admin cannot see all.
            for extra in cloud.state.values("users"):
                creds = extra.get("_clouds_yaml_project")
                if creds:
                    clouds[f"{cloud.name}-{extra['name']}"] = clouds_yaml_entry(
                        cloud, extra, creds, self.cacert)
        tmp = self.clouds_yaml.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"clouds": clouds}, sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(self.clouds_yaml)
        return self.clouds_yaml


def _certificate_names(specs: Iterable[CloudSpec]) -> list[str]:
    """Every host a client may reach the clouds by: where they listen, and the host of each
    public URL (a DNS name that points here)."""
    names = [spec.host for spec in specs]
    names += [urlsplit(spec.public_url).hostname or "" for spec in specs if spec.public_url]
    return [n for n in names if n]


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)
