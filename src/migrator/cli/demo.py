"""``migrator demo``: a seeded legacy cloud and an empty target, both simulated, and the whole
story (init, discover, plan, execute, an interruption, resume, status) in one command."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import click

from migrator.cli import discover as discover_cli
from migrator.cli import plan as plan_cli
from migrator.cli.db import upgrade_message
from migrator.cli.execute import run_summary
from migrator.cli.output import Table, echo_table
from migrator.cli.progress import Display, progress_display
from migrator.cli.status import status_tables
from migrator.errors import MigratorError

if TYPE_CHECKING:
    from migrator.engine.executor import Progress, RunResult
    from migrator.operations.db import InitResult
    from migrator.operations.demo import Verification
    from migrator.operations.discover import DiscoverResult
    from migrator.operations.plan import PlanResult
    from migrator.operations.status import StatusReport


class _Transfers:
    """Forwards transfer progress to the reporter's current display (made on first use)."""

    def __init__(self, reporter: ConsoleReporter) -> None:
        self.reporter = reporter

    def started(self, key: str, label: str, total: int | None) -> None:
        self.reporter._current().transfers.started(key, label, total)

    def advanced(self, key: str, done: int) -> None:
        self.reporter._current().transfers.advanced(key, done)

    def ended(self, key: str, ok: bool) -> None:
        self.reporter._current().transfers.ended(key, ok)


class ConsoleReporter:
    """Renders each stage with the same output the real commands print."""

    def __init__(self) -> None:
        # The execute progress display (a rich bar on a terminal) lives from a run's first
        # event to its end.
        self._display = ExitStack()
        self._show: Display | None = None

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

    def _current(self) -> Display:
        if self._show is None:
            self._show = self._display.enter_context(progress_display())
        return self._show

    def progress(self, event: Progress) -> None:
        self._current()(event)

    @property
    def transfers(self) -> _Transfers:
        """Byte progress of image and volume copies, drawn by the current display."""
        return _Transfers(self)

    def verified(self, report: Verification) -> None:
        rows = Table("Images and volumes, legacy vs target", ["TENANT", "KIND", "NAME",
                                                              "LEGACY", "TARGET", "MATCH"])
        rows.rows = [[c.tenant, c.kind, c.name, c.source, c.target, "yes" if c.ok else "NO"]
                     for c in report.checks]
        echo_table(rows)
        if report.example is not None:
            name, before, after = report.example
            click.echo(f"\nProperties of the AArch64 image {name}, before -> after:")
            for key in sorted(set(before) | set(after)):
                old, new = before.get(key), after.get(key)
                if old == new:
                    click.echo(f"  {key}: {old}")
                else:
                    click.echo(f"  {key}: {old if old is not None else '(none)'} -> "
                               f"{new if new is not None else '(dropped)'}")

    def run_ended(self, result: RunResult) -> None:
        self._display.close()
        self._show = None
        click.echo(run_summary(result))

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
@click.option("--tls", is_flag=True, help="Serve both simulated clouds over HTTPS.")
def demo_command(tenants: int, workers: int, interrupt_after: int, workdir: Path | None,
                 tls: bool) -> None:
    """Migrate the tenants of a simulated Liberty cloud to a simulated modern one, with an
    interruption and a resume on the way."""
    # Imported here: the simulator, the engine and openstacksdk are not for `--help`.
    from migrator.operations.demo import DemoOptions, run_demo

    reporter = ConsoleReporter()
    try:
        result = run_demo(DemoOptions(tenants=tenants, workers=workers,
                                      interrupt_after=interrupt_after, workdir=workdir,
                                      tls=tls),
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
    checked = result.verification
    if checked is not None:
        images = sum(1 for c in checked.checks if c.kind == "image")
        volumes = len(checked.checks) - images
        click.echo(f"{images} images and {volumes} volumes moved; "
                   + ("every one matches its legacy size and checksum."
                      if checked.ok else "SOME DO NOT MATCH (see the table above)."))
        if not checked.ok:
            raise MigratorError("demo: the verification found images or volumes that do not "
                                "match their legacy twin")
    if result.kept:
        click.echo(f"Everything is in {result.workdir} (state/migrator.db, plans/demo.yaml, "
                   "sim/clouds.yaml).")
