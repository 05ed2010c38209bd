"""The virtualenv of the real OpenStack services (Keystone, Glance, Cinder): built once from
tests/real/requirements.txt and cached outside the repository, never in the project's own
environment.

    python -m tests.real.venv          # build it unless it is there; print its path
    python -m tests.real.venv --check  # print its path, exit 1 when it is not built

Its folder is ``$MIGRATOR_REAL_CACHE`` (default ``~/.cache/migrator-real``) / a hash of the
requirements file and the Python version, so that a changed pin builds a new one beside the
old. It is built at its final path (a virtualenv cannot be moved: its scripts name their
interpreter by absolute path) under a file lock (two test runs never build the same one at
once); a marker file written last says it is complete, and a failed or interrupted build is
removed (a folder without the marker is built again).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
# Written last: a folder without it is not a usable environment.
COMPLETE = ".complete"


class VenvError(Exception):
    """The services' virtualenv cannot be built (no network, pip failed)."""


def cache_root() -> Path:
    configured = os.environ.get("MIGRATOR_REAL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "migrator-real"


def venv_key(python: str = sys.executable) -> str:
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True, capture_output=True, text=True).stdout.strip()
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + version.encode()).hexdigest()
    return f"py{version}-{digest[:16]}"


def venv_path(python: str = sys.executable) -> Path:
    return cache_root() / venv_key(python)


def is_built(path: Path) -> bool:
    return (path / COMPLETE).is_file() and (path / "bin" / "gunicorn").is_file()


def ensure_venv(python: str = sys.executable, *, log: Path | None = None) -> Path:
    """The path of the built virtualenv, building it first when it is not there."""
    path = venv_path(python)
    if is_built(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it: wait
        if is_built(path):
            return path
        shutil.rmtree(path, ignore_errors=True)  # an earlier build's leftovers
        out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
        try:
            steps = [
                # The base interpreter, not the project's virtualenv (a venv of a venv would
                # see nothing of the project's, but say so explicitly).
                [getattr(sys, "_base_executable", python), "-m", "venv", str(path)],
                [str(path / "bin" / "pip"), "install", "--quiet",
                 "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            ]
            for cmd in steps:
                result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, check=False)
                if result.returncode != 0:
                    tail = log.read_text()[-2000:] if log else ""
                    raise VenvError(f"{' '.join(cmd[:3])} ... exited {result.returncode}"
                                    + (f": {tail}" if tail else ""))
            (path / COMPLETE).write_text(REQUIREMENTS.read_text())
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.real.venv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="do not build; exit 1 when the virtualenv is not built")
    args = parser.parse_args(argv)
    path = venv_path()
    if args.check:
        print(path)
        return 0 if is_built(path) else 1
    began = time.monotonic()
    was_built = is_built(path)
    try:
        ensure_venv(log=None if was_built else Path(f"{path}.log"))
    except VenvError as exc:
        print(f"Error: the real services' virtualenv {path}: {exc}", file=sys.stderr)
        return 1
    state = "cached" if was_built else f"built in {time.monotonic() - began:.0f} s"
    print(f"{path} ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
