"""``migrator demo``: the whole story on simulated clouds, in one command.

A seeded Liberty cloud (``legacy``) and an empty modern one (``target``, with the external
IPv6 network an operator creates when deploying it) are served by the simulator; then the
real operations run one after the other, exactly as an operator would type them: init,
discover, plan, execute (which interrupts itself once, as a Ctrl-C would), execute --resume,
status. What the demo shows is reported through a ``DemoReporter`` so the CLI can render it.
"""

from __future__ import annotations

import json
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from migrator.clouds.connection import open_cloud
from migrator.config import SAMPLE
from migrator.engine.executor import Observer, Progress, RunResult
from migrator.errors import ConfigError, MigratorError
from migrator.operations.context import open_state
from migrator.operations.db import InitResult, init_state
from migrator.operations.discover import DiscoverResult, discover
from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.operations.plan import PlanResult, make_plan
from migrator.operations.status import StatusReport, status
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from migrator.store.steps import completed_twice, data_steps

# The target's provider network, as a Kolla deployment in an IPv6-only datacenter has it.
TARGET_EXTERNAL_PREFIX = "2001:db8:ffff::/64"


class DemoReporter(Protocol):
    def section(self, title: str) -> None: ...
    def note(self, text: str) -> None: ...
    def initialized(self, result: InitResult) -> None: ...
    def discovered(self, result: DiscoverResult) -> None: ...
    def planned(self, result: PlanResult) -> None: ...
    def progress(self, event: Progress) -> None: ...
    def run_ended(self, result: RunResult) -> None: ...
    def status(self, report: StatusReport) -> None: ...
    def verified(self, report: Verification) -> None: ...


@dataclass(frozen=True)
class DataCheck:
    """One migrated image or volume, read on both sides."""

    tenant: str
    kind: str
    name: str
    source: str  # "<size> <checksum>" as the legacy cloud reports it
    target: str
    ok: bool


@dataclass
class Verification:
    checks: list[DataCheck] = field(default_factory=list)
    # one AArch64 image: (name, properties before, properties after)
    example: tuple[str, dict[str, str], dict[str, str]] | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True)
class DemoOptions:
    tenants: int = 3
    workers: int = 4
    # The run interrupts itself after this many steps are done (0: never).
    interrupt_after: int = 10
    workdir: Path | None = None
    tls: bool = False  # both clouds over HTTPS (the simulator's own CA, cacert in clouds.yaml)


@dataclass
class DemoResult:
    workdir: Path
    kept: bool
    plan_file: Path
    interrupted: RunResult | None
    final: RunResult
    # From the audit log: steps completed more than once across the interruption (none).
    steps_completed_twice: list[str]
    verification: Verification | None = None


@contextmanager
def _workdir(path: Path | None) -> Iterator[tuple[Path, bool]]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path, True
        return
    with tempfile.TemporaryDirectory(prefix="migrator-demo-") as tmp:
        yield Path(tmp), False


# Servers per tenant in the demo: an AArch64 web server with a floating IP, a volume-backed
# x86 database with a data volume, an x86 server left SHUTOFF (sim/seed_gen.py's cycle).
DEMO_SERVERS = 3
# The target's flavors, as its operator made them: the legacy names, so no mapping is needed.
DEMO_FLAVORS = {"m1.small": (1, 2048, 20), "m1.medium": (2, 4096, 40),
                "a1.large": (4, 8192, 80)}


def _prepare_target(server: SimServer) -> None:
    """What the operator of the new cloud set up before migrating: its external network,
    a volume type, its flavors."""
    handle = open_cloud("target", config_file=server.clouds_yaml, role="target")
    try:
        network = handle.conn.network
        if network.find_network("public") is None:
            net = network.create_network(name="public", is_router_external=True)
            network.create_subnet(network_id=net.id, name="public-v6", ip_version=6,
                                  cidr=TARGET_EXTERNAL_PREFIX, enable_dhcp=False)
        # A volume type of the legacy name (ssd); legacy "standard" is mapped to the
        # target's default type in the demo's configuration.
        storage = handle.conn.block_storage
        if storage.find_type("ssd") is None:
            storage.create_type(name="ssd")
        compute = handle.conn.compute
        for name, (vcpus, ram, disk) in DEMO_FLAVORS.items():
            if compute.find_flavor(name, ignore_missing=True) is None:
                compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk)
    finally:
        handle.close()


class _InterruptAfter:
    """An observer that presses Ctrl-C once, after ``after`` steps are done."""

    def __init__(self, after: int, inner: Observer) -> None:
        self.after = after
        self.inner = inner
        self.pressed = False

    def __call__(self, event: Progress) -> None:
        self.inner(event)
        if self.pressed or not self.after or event.event != "step-done":
            return
        if event.counts.get("done", 0) >= self.after:
            self.pressed = True
            signal.raise_signal(signal.SIGINT)


def run_demo(options: DemoOptions, reporter: DemoReporter) -> DemoResult:
    """Serve the simulated clouds, run the story, stop the clouds; the workdir is removed
    afterwards unless ``options.workdir`` names one."""
    if threading.current_thread() is not threading.main_thread():
        raise ConfigError("migrator demo interrupts itself with SIGINT: run it in the main "
                          "thread")
    with _workdir(options.workdir) as (workdir, kept):
        seed = workdir / "seed.json"
        seed.write_text(json.dumps(generate(SeedShape(
            tenants=options.tenants, image_size=256 << 10, volume_data_size=256 << 10,
            servers_per_tenant=DEMO_SERVERS))))
        reporter.section("Simulated clouds")
        with SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                       workdir / "sim", seed=seed, tls=options.tls) as server:
            _prepare_target(server)
            for cloud in server.clouds.values():
                reporter.note(f"{cloud.name}: {cloud.profile.name} cloud at {cloud.base_url}")
            reporter.note(f"clouds.yaml: {server.clouds_yaml}")
            plan_file, interrupted, final, rerun = _story(options, reporter, workdir,
                                                          server.clouds_yaml)
            reporter.section("verification: every image and volume, read on both clouds")
            checked = verify_data(f"sqlite:///{workdir / 'state' / 'migrator.db'}", final,
                                  server.clouds_yaml)
            reporter.verified(checked)
        return DemoResult(workdir=workdir, kept=kept, plan_file=plan_file,
                          interrupted=interrupted, final=final, steps_completed_twice=rerun,
                          verification=checked)


def _story(options: DemoOptions, reporter: DemoReporter, workdir: Path, clouds_yaml: Path
           ) -> tuple[Path, RunResult | None, RunResult, list[str]]:
    url = f"sqlite:///{workdir / 'state' / 'migrator.db'}"
    config = workdir / "migrator.yaml"
    config.write_text(SAMPLE.replace("state/passwords.yaml",
                                     str(workdir / "state" / "passwords.yaml"))
                      .replace("volume_types: {}", "volume_types: {standard: __DEFAULT__}")
                      .replace("poll_interval: 2 ", "poll_interval: 0.1"))
    reporter.section("migrator init")
    reporter.initialized(init_state(url))
    reporter.section("migrator discover --cloud legacy")
    reporter.discovered(discover(url, "legacy", clouds_yaml=clouds_yaml))
    reporter.section("migrator plan -o plans/demo.yaml")
    planned = make_plan(url, config=config, output=workdir / "plans" / "demo.yaml",
                        clouds_yaml=clouds_yaml)
    reporter.planned(planned)
    reporter.section("migrator execute plans/demo.yaml   (interrupts itself once)")
    transfers = getattr(reporter, "transfers", None)
    run_options = ExecuteOptions(clouds_yaml=clouds_yaml, workers=options.workers,
                                 backoff_base=0.2, transfer_progress=transfers)
    first = execute_plan(url, planned.path, replace(
        run_options, observer=_InterruptAfter(options.interrupt_after, reporter.progress)))
    assert first.run is not None
    reporter.run_ended(first.run)
    interrupted: RunResult | None = first.run
    final = first.run
    if first.run.status != "finished":
        reporter.section("migrator execute plans/demo.yaml --resume")
        resumed = execute_plan(url, planned.path, replace(
            run_options, resume=True, observer=reporter.progress))
        assert resumed.run is not None
        final = resumed.run
        reporter.run_ended(final)
    else:
        interrupted = None
    if final.status != "finished":
        raise MigratorError(f"demo run {final.run_name} ended {final.status}: "
                            f"{', '.join(final.failed_steps[:3])}")
    reporter.section("migrator status")
    reporter.status(status(url))
    return planned.path, interrupted, final, steps_completed_twice(url, final.run_id)


def steps_completed_twice(url: str, run_id: int) -> list[str]:
    """Keys of the steps the audit log shows completing more than once (should be none)."""
    with open_state(url) as engine, engine.connect() as conn:
        return completed_twice(conn, run_id)


def verify_data(url: str, run: RunResult, clouds_yaml: Path) -> Verification:
    """Every image and volume step of the run: the legacy resource and its target twin read
    again (size and checksum of images; size, status and the copied bytes' md5 against the
    legacy temporary image's checksum for volumes), and one AArch64 image's properties
    before and after."""
    from migrator.handlers.idmap import id_map
    from migrator.store.db import session_factory
    from migrator.transfer.properties import image_properties
    from migrator.transfer.volume_api import Api

    with open_state(url) as engine:
        factory = session_factory(engine)
        mapping = id_map(factory, run.run_id)
        with engine.connect() as conn:
            steps = data_steps(conn, run.run_id)
    legacy = open_cloud("legacy", config_file=clouds_yaml, role="source")
    target = open_cloud("target", config_file=clouds_yaml, role="target")
    out = Verification()
    try:
        src, dst = Api(legacy), Api(target)
        for step in steps:
            kind, source_id, name, tenant = step.kind, step.source_id, step.name, step.tenant
            checkpoint = step.checkpoint
            target_id = mapping.get((kind, str(source_id)))
            if kind == "image":
                before = src.image(str(source_id)) or {}
                after = dst.image(str(target_id)) if target_id else None
                after = after or {}
                left = f"{before.get('size')} B md5 {before.get('checksum')}"
                right = f"{after.get('size')} B md5 {after.get('checksum')}"
                ok = bool(after) and (before.get("size"), before.get("checksum")) == (
                    after.get("size"), after.get("checksum")) and after.get("status") == "active"
                if out.example is None and before.get("architecture") == "aarch64" and after:
                    out.example = (str(name), image_properties(
                        {k: v for k, v in before.items() if k != "members"}),
                        image_properties(after))
            else:
                cp: dict[str, Any] = dict((checkpoint or {}).get("copy") or {})
                vol_before = src.volume(str(source_id)) or {}
                vol_after = _target_volume(target, str(target_id)) if target_id else {}
                legacy_md5 = (cp.get("source_temp_image") or {}).get("checksum")
                copied = cp.get("copied") or {}
                left = f"{vol_before.get('size')} GiB, upload md5 {legacy_md5}"
                right = (f"{vol_after.get('size')} GiB {vol_after.get('status')}, "
                         f"copied md5 {copied.get('md5')}")
                ok = (vol_after.get("status") == "available"
                      and vol_after.get("size") == vol_before.get("size")
                      and bool(legacy_md5) and copied.get("md5") == legacy_md5)
            out.checks.append(DataCheck(str(tenant or "-"), str(kind), str(name), left, right,
                                        bool(ok)))
    finally:
        legacy.close()
        target.close()
    return out


def _target_volume(target: Any, volume_id: str) -> dict[str, Any]:
    """A target volume read as the admin (any project)."""
    body = target.get_json("block_storage", f"volumes/{volume_id}", allow_404=True)
    return dict((body or {}).get("volume") or {})
