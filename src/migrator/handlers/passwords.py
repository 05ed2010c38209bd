"""The password file: the initial passwords of the users migrator creates (policy ``random``).

The file is YAML an operator reads: a comment header, then one mapping entry per user,
``name: password`` (``name@domain`` outside the default domain), in the order the users were
created. ``yaml.safe_load`` reads it as one mapping. Each new password is one append:

- the file is opened with ``O_APPEND | O_CREAT`` and mode 0600, so it never exists with wider
  permissions (a file found with wider ones is narrowed before anything is written);
- an exclusive ``flock`` on the file serialises the threads of this process and every other
  process appending to the same file (workers on one host);
- under the lock, the entries appended since this process last looked are read (only those:
  each process reads every entry once, so an append costs the same at the 10th user and at
  the 100,000th); a user already recorded gets the recorded password back, so a retried or
  resumed create never writes a second, different password;
- the entry is written in one ``write`` and ``fsync``'ed (with the directory when the file is
  new) before the password is returned, so the user is never created with a password that a
  crash could lose.

Passwords never reach a log, an exception message or the state database: errors about the
file name it and a line number, never its content.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migrator.errors import ConfigError, StepFailedError

HEADER = (
    "# Initial passwords of the users migrator created on the target (mode 0600).\n"
    "# One 'user: password' entry per line (user@domain outside the default domain),\n"
    "# appended as the users are created. Hand them over securely, then delete this file.\n"
)
PASSWORD_BYTES = 18  # secrets.token_urlsafe: 24 characters

# libyaml when present: the entries are parsed once per process, but there may be many.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass
class _Known:
    """What this process has read of one password file."""

    device: int = -1
    inode: int = -1
    offset: int = 0  # bytes read so far (always at the end of an entry)
    ends_with_newline: bool = True
    entries: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_FILES: dict[str, _Known] = {}
_FILES_LOCK = threading.Lock()


def _forget_after_fork() -> None:
    # A forked child starts with fresh locks (one held by another thread at the fork would
    # never be released) and re-reads the file.
    global _FILES_LOCK
    _FILES.clear()
    _FILES_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _known(path: Path) -> _Known:
    key = os.path.abspath(path)
    with _FILES_LOCK:
        known = _FILES.get(key)
        if known is None:
            known = _FILES[key] = _Known()
        return known


def format_entry(key: str, password: str) -> str:
    """One entry as YAML (one line for any ordinary user name; quoted where YAML needs it)."""
    return str(yaml.dump({key: password}, Dumper=_Dumper, default_flow_style=False,
                         allow_unicode=True, width=1 << 30))


def _parse(path: Path, text: str, first_line: Callable[[], int]) -> dict[str, str]:
    try:
        loaded = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        # The parser's message quotes the offending line, which may hold a password.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {first_line() + mark.line})" if mark is not None else ""
        raise ConfigError(f"password file {path} is not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"password file {path} is not a mapping of user -> password")
    return {str(k): str(v) for k, v in loaded.items()}


def _catch_up(path: Path, fd: int, known: _Known, st: os.stat_result) -> None:
    """Read the entries appended since this process last looked (all of them when the file
    is another one, or shorter than what was read: rewritten by hand)."""
    if (st.st_dev, st.st_ino) != (known.device, known.inode) or st.st_size < known.offset:
        known.device, known.inode = st.st_dev, st.st_ino
        known.offset, known.ends_with_newline = 0, True
        known.entries = {}
    if st.st_size == known.offset:
        return
    raw = os.pread(fd, st.st_size - known.offset, known.offset)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"password file {path} is not UTF-8 text") from None
    offset = known.offset
    known.entries.update(_parse(path, text, lambda: 1 + _lines_before(fd, offset)))
    known.offset = st.st_size
    known.ends_with_newline = text.endswith("\n")


def _lines_before(fd: int, offset: int) -> int:
    """Only for an error message: the line number where ``offset`` starts."""
    return os.pread(fd, offset, 0).count(b"\n")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_directory(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _io_error(path: Path, exc: OSError) -> StepFailedError:
    # Retryable (a full disk, a lost mount); the message names the file, never its content.
    return StepFailedError(f"password file {path}: {exc.strerror or exc}")


def random_password(path: Path, key: str) -> str:
    """The password recorded for ``key`` in the password file ``path``, or a new random one,
    appended there (durably, mode 0600) before it is returned, so that a retried or resumed
    create reuses it."""
    known = _known(path)
    with known.lock:  # the threads of this process; flock below orders the processes
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                         | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"password file {path} is a symbolic link: name the file "
                                  "itself (users.password_file)") from None
            raise _io_error(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"password file {path} is not a regular file")
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, 0o600)  # before a password is written to it
            _catch_up(path, fd, known, st)
            recorded = known.entries.get(key)
            if recorded is not None:
                return recorded
            password = secrets.token_urlsafe(PASSWORD_BYTES)
            entry = format_entry(key, password)
            if known.offset == 0:
                entry = HEADER + entry
            elif not known.ends_with_newline:
                entry = "\n" + entry  # a hand-edited file without a final newline
            data = entry.encode("utf-8")
            _write_all(fd, data)
            os.fsync(fd)
            if known.offset == 0:
                _fsync_directory(path)
            known.offset += len(data)
            known.ends_with_newline = True
            known.entries[key] = password
            return password
        except OSError as exc:
            raise _io_error(path, exc) from None
        finally:
            os.close(fd)  # releases the flock


def read_password_file(path: Path) -> dict[str, str]:
    """Every entry of a password file (for operators' tools and tests)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"password file {path}: {exc.strerror}") from None
    return _parse(path, text, lambda: 1)
