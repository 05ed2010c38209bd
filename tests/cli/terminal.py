"""A command run on a pseudo-terminal, and what it drew there.

The child's stdin, stdout and stderr are the slave side of ``pty.openpty()`` with a window
size set (rich reads it); everything it writes is read from the master side and fed to a
terminal emulator (pyte), so ``screen`` is the screen as a person would see it at the end,
after every cursor movement and erase. ``rows`` is every line ever drawn (each frame of a
live display), for what was on screen only for a while (a transfer's own row).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import pyte

COLUMNS = 120
WINDOW_ROWS = 40
# The emulated screen is taller than the window, so that nothing printed scrolls away.
SCREEN_ROWS = 2000
# SGR (colours, bold): removed; any other control sequence or a carriage return: a row break.
_STYLE = re.compile(rb"\x1b\[[0-9;]*m")
_CONTROL = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r|\n")


@dataclass
class Drawn:
    exit_code: int
    raw: bytes
    screen: list[str]  # the final screen, trailing blank lines dropped
    rows: list[str]  # every row ever written, in order

    @property
    def text(self) -> str:
        return "\n".join(self.screen)


def run_on_terminal(args: list[str], *, cwd: Path, env: dict[str, str],
                    deadline_s: float = 600.0) -> Drawn:
    """Run ``args`` on a pseudo-terminal of COLUMNS x WINDOW_ROWS until it exits.

    ``deadline_s`` only guards against a hang (the child is killed, the test fails)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", WINDOW_ROWS, COLUMNS, 0, 0))
    try:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave,
                                stderr=slave, close_fds=True)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    ends = time.monotonic() + deadline_s
    try:
        while time.monotonic() < ends:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            chunks.append(chunk)
        else:
            proc.kill()
            raise AssertionError(f"{args} still running after {deadline_s} s; drew:\n"
                                 + b"".join(chunks).decode(errors="replace")[-4000:])
        exit_code = proc.wait(timeout=60)
    finally:
        os.close(master)
    raw = b"".join(chunks)
    screen = pyte.Screen(COLUMNS, SCREEN_ROWS)
    stream = pyte.ByteStream(screen)
    stream.feed(raw)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    rows = [row.decode(errors="replace").strip()
            for row in _CONTROL.split(_STYLE.sub(b"", raw))]
    return Drawn(exit_code, raw, lines, [row for row in rows if row])
