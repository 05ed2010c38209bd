"""``migrator worker``: join a run (or wait for one) and execute its steps until none is
left, beside other workers on this host or others."""

from __future__ import annotations

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.execute import report
from migrator.cli.progress import progress_display


@click.command("worker")
@click.option("--run", "run_name", metavar="NAME",
              help="The run to join [default: the oldest run that is created, running or "
                   "paused; wait for one].")
@click.option("--slots", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Steps this worker executes at a time.")
@click.option("--wait", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Without --run: how long to wait for a run to appear [default: for ever].")
@click.option("--lease", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Lease of the steps this worker holds: another worker takes them over "
                   "when this one has not renewed them for so long [default: 30].")
@click.option("--max-attempts", type=click.IntRange(1, 100),
              help="Tries per step before it fails for good and blocks its dependents "
                   "[default: retries.step_attempts, 3].")
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Configuration (transfer settings) [default: the one the run's plan names].")
@click.option("--clouds-yaml", metavar="FILE", type=click.Path(dir_okay=False),
              help="clouds.yaml to read [default: $OS_CLIENT_CONFIG_FILE, then the usual "
                   "places].")
@pass_cli
def worker_command(cli: CliContext, run_name: str | None, slots: int, wait: float | None,
                   lease: float | None, max_attempts: int | None, config_path: str | None,
                   clouds_yaml: str | None) -> None:
    """Execute steps of a run beside its other workers. Ctrl-C or SIGTERM hands the running
    steps back at their next checkpoint and leaves; the run goes on with the others."""
    from migrator.operations.worker import run_worker

    with progress_display() as observer:
        result = run_worker(cli.db_url, run_name, slots=slots, wait=wait, lease_seconds=lease,
                            max_attempts=max_attempts, config=config_path,
                            clouds_yaml=clouds_yaml, observer=observer,
                            transfer_progress=observer.transfers)
    if result.status in ("running", "paused"):
        click.echo(f"Worker left run {result.run_name} ({result.status}, "
                   f"{result.completed} steps done here); the other workers go on.")
        return
    report(result, result.run_name)
