"""Progress of a run as ``execute`` (and ``demo``) show it: step events and transfer bytes.

On a terminal: ONE rich live display holding two groups of rows, the steps (done of total,
what is running, failed or blocked) and the transfers (a row per active image or volume copy
with bytes, rate and ETA, plus an overall bytes row); failures and retries print above it.
Otherwise: one plain line per notable event and per tenth of a transfer.

Rich refuses a second live display while one is active (before 14.1: ``LiveError: Only one
live display may be active at once``), so the two groups are two ``Progress`` renderables
drawn by one ``Live``; neither Progress is started itself. This module imports rich only when
it draws, and nothing of the engine at all, so that ``migrator --help`` stays quick.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

import click

if TYPE_CHECKING:
    from migrator.engine.executor import Progress
    from migrator.handlers.data import TransferProgress

# Events worth a line in plain output (starts would double the noise).
PLAIN_EVENTS = {
    "step-done": "done",
    "step-skipped": "skipped",
    "step-retry": "retry",
    "step-failed": "FAILED",
    "step-blocked": "blocked",
    "step-requeued": "requeued",
    "step-lost": "taken over",
    "progress": "progress",
    "paused": "paused",
    "stopping": "stopping",
}
# Step states shown next to the steps bar when there are any.
_DETAIL_STATES = ("running", "failed", "blocked")
STEPS_ROW = "executing"
OVERALL_ROW = "all transfers"


class Display:
    """The observer of step events (callable) plus ``transfers``, the byte progress of image
    and volume copies (handlers.data.TransferProgress)."""

    def __init__(self, on_event: Callable[[Progress], None],
                 transfers: TransferProgress) -> None:
        self._on_event = on_event
        self.transfers = transfers

    def __call__(self, event: Progress) -> None:
        self._on_event(event)


def size_text(n: float) -> str:
    """``512 B``, ``1.5 MiB``: bytes for people."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def steps_done(event: Progress) -> int:
    return event.counts.get("done", 0) + event.counts.get("skipped", 0)


def plain_line(event: Progress) -> str | None:
    """``[done/total] done network physics-net (physics)``, or None for an event not worth a
    line."""
    label = PLAIN_EVENTS.get(event.event)
    if label is None:
        return None
    line = f"[{steps_done(event)}/{event.total}] {label} {event.label or event.step or ''}"
    line = line.rstrip()
    if event.message and event.event != "step-done":
        line += f": {event.message}"
    return line


class PlainTransfers:
    """One line per transfer every 10% or every 10 s (and at its end), plus the total."""

    EVERY_S = 10.0

    def __init__(self, echo: Callable[[str], None] = click.echo,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.echo = echo
        self.clock = clock
        self._lock = threading.Lock()
        self._t: dict[str, dict[str, Any]] = {}
        self.total_done = 0

    def started(self, key: str, label: str, total: int | None) -> None:
        now = self.clock()
        with self._lock:
            self._t[key] = {"label": label, "total": total, "done": 0, "began": now,
                            "said": now, "tenth": 0}
        self.echo(f"transfer {label}: started ({size_text(total) if total is not None else '?'})")

    def advanced(self, key: str, done: int) -> None:
        with self._lock:
            t = self._t.get(key)
            if t is None:
                return
            self.total_done += done - t["done"]
            t["done"] = done
            now = self.clock()
            tenth = done * 10 // t["total"] if t["total"] else 0
            if tenth <= t["tenth"] and now - t["said"] < self.EVERY_S:
                return
            t["tenth"], t["said"] = tenth, now
            line = self._line(t, now)
        self.echo(line)

    def _line(self, t: dict[str, Any], now: float) -> str:
        rate = t["done"] / max(now - t["began"], 1e-6)
        pct = f"{t['done'] * 100 // t['total']}% " if t["total"] else ""
        return (f"transfer {t['label']}: {pct}{size_text(t['done'])} at {size_text(rate)}/s"
                f" (all transfers: {size_text(self.total_done)})")

    def ended(self, key: str, ok: bool) -> None:
        with self._lock:
            t = self._t.pop(key, None)
        if t is not None:
            state = "done" if ok else "stopped"
            self.echo(f"transfer {t['label']}: {state}, {size_text(t['done'])} in "
                      f"{self.clock() - t['began']:.1f} s")


class RichTransfers:
    """A row per active transfer (bytes, rate, ETA) and an overall bytes row, in ``bar`` (a
    rich Progress that is drawn by someone else's Live)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self._lock = threading.Lock()
        self._tasks: dict[str, tuple[Any, int]] = {}
        self._overall: Any = None
        self._total = 0

    def started(self, key: str, label: str, total: int | None) -> None:
        with self._lock:
            if self._overall is None:
                self._overall = self.bar.add_task(OVERALL_ROW, total=0)
            self._total += total or 0
            self.bar.update(self._overall, total=self._total)
            task = self.bar.add_task(label, total=total)
            self._tasks[key] = (task, 0)

    def advanced(self, key: str, done: int) -> None:
        with self._lock:
            found = self._tasks.get(key)
            if found is None:
                return
            task, before = found
            self._tasks[key] = (task, done)
            self.bar.update(task, completed=done)
            self.bar.advance(self._overall, done - before)

    def ended(self, key: str, ok: bool) -> None:
        with self._lock:
            found = self._tasks.pop(key, None)
            if found is not None:
                self.bar.remove_task(found[0])


@contextmanager
def progress_display(stream: TextIO | None = None) -> Iterator[Display]:
    """Rich rows when ``stream`` (default: stdout) is a terminal, plain lines otherwise."""
    out = stream if stream is not None else sys.stdout
    if not out.isatty():
        yield Display(_echo_plain, PlainTransfers())
        return
    with _live_display() as display:
        yield display


def _echo_plain(event: Progress) -> None:
    line = plain_line(event)
    if line is not None:
        # Not click.echo: a line per step, and click asks the stream whether it is a
        # terminal and strips colour codes on every call; these lines have none.
        out = sys.stdout
        out.write(line + "\n")
        out.flush()


@contextmanager
def _live_display() -> Iterator[Display]:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as RichProgress

    console = Console()
    # Neither Progress is started: the Live below draws both (auto_refresh off, so that
    # neither starts a refresh thread of its own).
    steps = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        auto_refresh=False,
    )
    transfers = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        auto_refresh=False,
    )
    task = steps.add_task(STEPS_ROW, total=None, detail="")

    def update(event: Progress) -> None:
        detail = ", ".join(f"{event.counts[s]} {s}" for s in _DETAIL_STATES
                           if event.counts.get(s))
        steps.update(task, total=event.total, completed=steps_done(event), detail=detail)
        if event.event in ("step-failed", "step-retry"):
            what = event.label or event.step
            console.print(f"{PLAIN_EVENTS[event.event]} {what}: {event.message}",
                          markup=False, highlight=False)

    with Live(Group(steps, transfers), console=console, refresh_per_second=4):
        yield Display(update, RichTransfers(transfers))
