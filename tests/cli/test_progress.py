"""The pieces of execute's progress display: plain lines for a pipe, the transfer rows of the
live display (what a terminal shows is tested through ``migrator execute`` in
tests/cli/test_execute.py)."""

from __future__ import annotations

from rich.progress import Progress as RichProgress

from migrator.cli.progress import (
    OVERALL_ROW,
    PlainTransfers,
    RichTransfers,
    plain_line,
    size_text,
)
from migrator.engine.executor import Progress


def event(kind: str, *, done: int = 3, total: int = 10, message: str | None = None,
          label: str | None = "network physics-net (physics)") -> Progress:
    return Progress(event=kind, run="r", step="network:1", counts={"done": done,
                                                                   "skipped": 1},
                    total=total, message=message, label=label)


def test_plain_lines() -> None:
    assert plain_line(event("step-done", message="ignored")) == (
        "[4/10] done network physics-net (physics)")
    assert plain_line(event("step-retry", message="HTTP 503")) == (
        "[4/10] retry network physics-net (physics): HTTP 503")
    assert plain_line(event("step-failed", label=None, message="boom")) == (
        "[4/10] FAILED network:1: boom")
    assert plain_line(event("step-started")) is None
    assert [size_text(n) for n in (0, 1023, 1024, 5 << 20, 3 << 30, 5 << 40)] == [
        "0 B", "1023 B", "1.0 KiB", "5.0 MiB", "3.0 GiB", "5120.0 GiB"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_transfers_say_each_tenth_and_every_ten_seconds() -> None:
    lines: list[str] = []
    clock = Clock()
    transfers = PlainTransfers(lines.append, clock)
    transfers.started("a", "image big (physics)", 1000)
    transfers.started("b", "volume data (physics)", None)  # size unknown
    clock.now += 2
    transfers.advanced("a", 50)  # under a tenth: nothing
    transfers.advanced("a", 100)
    transfers.advanced("b", 4096)  # size unknown, under 10 s since it started: nothing
    clock.now += 10
    transfers.advanced("b", 8192)
    transfers.advanced("a", 150)  # 10 s passed: said though under the next tenth
    transfers.advanced("zzz", 1)  # not started: ignored
    transfers.ended("a", ok=True)
    transfers.ended("b", ok=False)
    transfers.ended("b", ok=False)  # once only
    assert lines == [
        "transfer image big (physics): started (1000 B)",
        "transfer volume data (physics): started (?)",
        "transfer image big (physics): 10% 100 B at 50 B/s (all transfers: 100 B)",
        "transfer volume data (physics): 8.0 KiB at 683 B/s (all transfers: 8.1 KiB)",
        "transfer image big (physics): 15% 150 B at 12 B/s (all transfers: 8.1 KiB)",
        "transfer image big (physics): done, 150 B in 12.0 s",
        "transfer volume data (physics): stopped, 8.0 KiB in 12.0 s",
    ]


def test_rich_transfer_rows() -> None:
    bar = RichProgress()  # never started: rows only
    rows = RichTransfers(bar)
    rows.started("a", "image big (physics)", 1000)
    rows.started("b", "volume data (physics)", 3000)
    rows.advanced("a", 400)
    rows.advanced("b", 1000)
    rows.advanced("a", 1000)

    def shown() -> dict[str, tuple[float, float | None]]:
        return {t.description: (t.completed, t.total) for t in bar.tasks}

    assert shown() == {OVERALL_ROW: (2000, 4000), "image big (physics)": (1000, 1000),
                       "volume data (physics)": (1000, 3000)}
    rows.ended("a", ok=True)
    rows.ended("a", ok=True)
    assert shown() == {OVERALL_ROW: (2000, 4000), "volume data (physics)": (1000, 3000)}
