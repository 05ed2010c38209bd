"""``migrator execute RUN``: run or resume a run's steps, with progress on the terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.engine.executor import Progress
from migrator.errors import StepFailedError
from migrator.operations.execute import execute_run

EXIT_INTERRUPTED = 130
# Events worth a line in plain output (starts would double the noise).
_PLAIN_EVENTS = {
    "step-done": "done",
    "step-skipped": "skipped",
    "step-retry": "retry",
    "step-failed": "FAILED",
    "step-blocked": "blocked",
    "step-requeued": "requeued",
    "stopping": "stopping",
}


@click.command("execute")
@click.argument("run_name", metavar="RUN")
@click.option("--resume", is_flag=True, help="Continue an interrupted, crashed or failed run.")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Tries per step before it fails for good and blocks its dependents.",
)
@click.option(
    "--force-unlock",
    is_flag=True,
    help="Take the run from an executor that cannot be checked (another host).",
)
@pass_cli
def execute_command(
    cli: CliContext,
    run_name: str,
    resume: bool,
    workers: int,
    max_attempts: int,
    force_unlock: bool,
) -> None:
    """Execute the steps of RUN (a name or an id), checkpointed. Ctrl-C stops gracefully
    (resume later with --resume); a second Ctrl-C exits at once."""
    with progress_display() as observer:
        result = execute_run(
            cli.db_url,
            run_name,
            workers=workers,
            resume=resume,
            force_unlock=force_unlock,
            max_attempts=max_attempts,
            observer=observer,
        )
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()) if n)
    click.echo(f"Run {result.run_name}: {result.status} in {result.elapsed_s:.1f} s ({counts})")
    if result.status == "interrupted":
        click.echo(f"Resume with: migrator execute {result.run_name} --resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if result.status != "finished":
        failed = ", ".join(result.failed_steps[:5]) + (
            " ..." if len(result.failed_steps) > 5 else ""
        )
        raise StepFailedError(
            f"run {result.run_name!r} failed: {len(result.failed_steps)} step(s) failed "
            f"({failed}), {result.counts.get('blocked', 0)} blocked; fix the cause and use "
            "--resume"
        )


@contextmanager
def progress_display() -> Iterator[Callable[[Progress], None]]:
    """A rich progress bar on a terminal, one plain line per notable event otherwise."""
    if not sys.stdout.isatty():
        yield _plain_line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    with RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task("executing", total=None, detail="")

        def update(event: Progress) -> None:
            done = event.counts.get("done", 0) + event.counts.get("skipped", 0)
            detail = ", ".join(
                f"{event.counts[s]} {s}"
                for s in ("running", "failed", "blocked")
                if event.counts.get(s)
            )
            bar.update(task, total=event.total, completed=done, detail=detail)
            if event.event in ("step-failed", "step-retry"):
                bar.console.print(f"{_PLAIN_EVENTS[event.event]} {event.step}: {event.message}")

        yield update


def _plain_line(event: Progress) -> None:
    label = _PLAIN_EVENTS.get(event.event)
    if label is None:
        return
    done = event.counts.get("done", 0) + event.counts.get("skipped", 0)
    line = f"[{done}/{event.total}] {label} {event.step or ''}".rstrip()
    if event.message and event.event not in ("step-done",):
        line += f": {event.message}"
    click.echo(line)
