"""Operations behind ``migrator sim``: serve simulated clouds, write generated seed files."""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from migrator.errors import ConfigError
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.seed_schema import SeedError
from migrator.sim.server import CloudSpec, SimServer

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str, field: str) -> int:
    """``4MiB``, ``1G``, ``512`` -> bytes (binary units)."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(f"{field}: {text!r} is not a size (examples: 512, 4MiB, 2GiB)")
    unit = (match.group(2) or "").upper()[:1]
    return int(match.group(1)) * _UNITS[unit]


def parse_clouds(specs: list[str]) -> list[CloudSpec]:
    try:
        return [CloudSpec.parse(s) for s in specs]
    except ValueError as exc:
        raise ConfigError(f"--cloud {exc}") from exc


def parse_public_urls(specs: list[CloudSpec], texts: list[str]) -> list[CloudSpec]:
    """``NAME=URL`` (``--public-url``): the URL cloud NAME's catalog and clouds.yaml
    advertise."""
    urls: dict[str, str] = {}
    names = {spec.name for spec in specs}
    for text in texts:
        name, sep, url = text.partition("=")
        parts = urlsplit(url)
        if not sep or name not in names:
            raise ConfigError(f"--public-url {text!r}: expected NAME=URL with NAME one of "
                              f"the served clouds ({', '.join(sorted(names))})")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigError(f"--public-url {text!r}: expected an http:// or https:// URL "
                              "with a host (and no query)")
        urls[name] = url.rstrip("/")
    return [replace(spec, public_url=urls.get(spec.name, spec.public_url)) for spec in specs]


def open_server(clouds: list[str], *, seed: Path | None, data_dir: Path | None,
                fault_seed: int = 0, serving_process: bool = False, tls: bool = False,
                public_urls: list[str] | None = None) -> SimServer:
    """A SimServer for ``NAME:PROFILE[:PORT]`` specs, seeded; not yet started.
    ``serving_process``: this process does nothing else (its loaded state is frozen out of
    the garbage collector's passes). ``tls``: HTTPS with the simulator's own CA;
    ``public_urls``: ``NAME=URL`` advertised instead of the listening address."""
    specs = parse_clouds(clouds or ["legacy:liberty:0", "target:modern:0"])
    specs = parse_public_urls(specs, list(public_urls or []))
    try:
        return SimServer(specs, data_dir, seed=seed, fault_seed=fault_seed,
                         freeze_loaded_state=serving_process, tls=tls)
    except SeedError as exc:
        raise ConfigError(str(exc)) from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def serve(server: SimServer, on_ready: Callable[[SimServer], None]) -> None:
    """Serve in the foreground until SIGINT or SIGTERM; state is saved on the way out."""
    server.start()
    on_ready(server)
    stop = threading.Event()

    def _stop(_sig: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Short waits keep the main thread returning to Python, where the handler runs.
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()


def write_seed(output: Path, shape: SeedShape, cloud: str = "legacy") -> dict[str, int]:
    """Generate a Liberty-era inventory for ``cloud`` into ``output`` (.json or .yaml)."""
    doc = generate(shape, cloud)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        if output.suffix == ".json":
            tmp.write_text(json.dumps(doc, indent=1))
        else:
            dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
            tmp.write_text(yaml.dump(doc, Dumper=dumper, sort_keys=False, width=100))
        tmp.replace(output)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write the seed file: {exc.strerror}") from exc
    tenants = doc["clouds"][cloud]["tenants"]
    return {
        "tenants": len(tenants) - 1,
        "images": sum(len(t.get("images", [])) for t in tenants),
        "volumes": sum(len(t.get("volumes", [])) for t in tenants),
        "networks": sum(len(t.get("networks", [])) for t in tenants),
        "servers": sum(len(t.get("servers", [])) for t in tenants),
    }
