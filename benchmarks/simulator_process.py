"""A simulator in its own process for the benchmarks that measure discovery over real HTTP:
started from a seed file, read its ready line, measured, stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def serve(seed: Path, data_dir: Path, clouds: Sequence[str]
          ) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """``migrator sim serve`` for ``clouds`` (``NAME:PROFILE`` specs); returns the process and
    its ready line (``clouds_yaml``, the clouds' URLs)."""
    spec = [arg for cloud in clouds for arg in ("--cloud", cloud)]
    # This tree's simulator, whatever is installed.
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    process = subprocess.Popen(
        [sys.executable, "-m", "migrator.sim", "serve", *spec, "--seed", str(seed),
         "--data-dir", str(data_dir), "--format", "json"], stdout=subprocess.PIPE, text=True,
        env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise RuntimeError("the simulator did not start")
    return process, json.loads(line)


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a live process (Linux), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:  # busy in a long request: stop it for good
        process.kill()
        process.wait(30)
