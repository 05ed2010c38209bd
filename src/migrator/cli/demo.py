"""``migrator demo``: a seeded legacy cloud and an empty target, both simulated, and the whole
story (init, discover, plan, execute, an interruption, resume, status) in one command."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import click

from migrator.cli import discover as discover_cli
from migrator.cli import plan as plan_cli
from migrator.cli.db import upgrade_message
from migrator.cli.execute import progress_display
from migrator.cli.output import echo_table
from migrator.cli.status import status_tables
from migrator.engine.executor import Progress, RunResult
from migrator.operations.db import InitResult
from migrator.operations.demo import DemoOptions, run_demo
from migrator.operations.discover import DiscoverResult
from migrator.operations.plan import PlanResult
from migrator.operations.status import StatusReport


class ConsoleReporter:
    """Renders each stage with the same output the real commands print."""

    def __init__(self) -> None:
        # The execute progress display (a rich bar on a terminal) lives from a run's first
        # event to its end.
        self._display = ExitStack()
        self._show: Callable[[Progress], None] | None = None

    def section(self, title: str) -> None:
        click.echo(f"\n=== {title}")

    def note(self, text: str) -> None:
        click.echo(text)

    def initialized(self, result: InitResult) -> None:
        click.echo(upgrade_message(result))

    def discovered(self, result: DiscoverResult) -> None:
        discover_cli.render(result)

    def planned(self, result: PlanResult) -> None:
        plan_cli.render(result)

    def progress(self, event: Progress) -> None:
        if self._show is None:
            self._show = self._display.enter_context(progress_display())
        self._show(event)

    def run_ended(self, result: RunResult) -> None:
        self._display.close()
        self._show = None
        counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()) if n)
        click.echo(f"Run {result.run_name}: {result.status} in {result.elapsed_s:.1f} s "
                   f"({counts})")

    def run_ended_quietly(self) -> None:
        self._display.close()

    def status(self, report: StatusReport) -> None:
        for table in status_tables(report):
            click.echo()
            echo_table(table)


@click.command("demo")
@click.option("--tenants", type=click.IntRange(1, 12), default=3, show_default=True,
              help="Tenants in the seeded legacy cloud.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--interrupt-after", type=click.IntRange(0), default=10, show_default=True,
              help="Steps done before the run interrupts itself (0: no interruption).")
@click.option("--dir", "workdir", type=click.Path(path_type=Path, file_okay=False),
              help="Keep everything (state database, plan, clouds, seed) in this folder "
                   "[default: a temporary folder, removed at the end].")
def demo_command(tenants: int, workers: int, interrupt_after: int, workdir: Path | None) -> None:
    """Migrate the tenants of a simulated Liberty cloud to a simulated modern one, with an
    interruption and a resume on the way."""
    reporter = ConsoleReporter()
    try:
        result = run_demo(DemoOptions(tenants=tenants, workers=workers,
                                      interrupt_after=interrupt_after, workdir=workdir),
                          reporter)
    finally:
        reporter.run_ended_quietly()
    interrupted = result.interrupted
    click.echo()
    if interrupted is not None:
        twice = result.steps_completed_twice
        click.echo(f"The run was interrupted once ({interrupted.counts.get('done', 0)} steps "
                   f"done) and resumed: {result.final.counts.get('done', 0)} steps done; "
                   + ("the audit log shows no step completed twice." if not twice else
                      f"the audit log shows {len(twice)} step(s) completed twice: "
                      f"{', '.join(twice[:5])}"))
    click.echo("Images and volumes are discovered but not moved yet (the data path is being "
               "built).")
    if result.kept:
        click.echo(f"Everything is in {result.workdir} (state/migrator.db, plans/demo.yaml, "
                   "sim/clouds.yaml).")
