"""``migrator rehearse``: a dress rehearsal of a plan on the real target, measured, then
removed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import Table, echo_json, echo_table, format_option

if TYPE_CHECKING:
    from migrator.operations.rehearse import RehearsalReport

# Exit status when the rehearsal or its removal did not finish (run it again to continue).
UNFINISHED_EXIT = 1


@click.command("rehearse")
@click.argument("plan", type=click.Path(dir_okay=False))
@click.option("--suffix", default="-rehearsal", show_default=True,
              help="Added to the names of everything the rehearsal creates.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Steps at a time [default: transfer.metadata_workers, or 8].")
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="migrator.yaml [default: the one the plan names].")
@click.option("--clouds-yaml", metavar="FILE", type=click.Path(dir_okay=False),
              help="clouds.yaml to read [default: $OS_CLIENT_CONFIG_FILE, then the usual "
                   "places].")
@format_option()
@pass_cli
def rehearse_command(cli: CliContext, plan: str, suffix: str, workers: int | None,
                     config_path: str | None, clouds_yaml: str | None,
                     output_format: str) -> None:
    """Run PLAN for real into a rehearsal namespace on the target (every name with SUFFIX,
    everything tagged as a rehearsal), measure each step kind and the throughput, then
    remove everything it created, and compare the dry run's estimate with the measurement.
    Interrupted, it continues where it stopped when run again. The real run of PLAN is not
    affected by anything the rehearsal leaves in the state database."""
    from migrator.operations.rehearse import rehearse

    report = rehearse(cli.db_url, plan, suffix=suffix, clouds_yaml=clouds_yaml,
                      config=config_path, workers=workers)
    if output_format == "json":
        echo_json(report.as_dict())
    else:
        render(report)
    if not report.ok:
        raise SystemExit(UNFINISHED_EXIT)


def render(report: RehearsalReport) -> None:
    from migrator.operations.dry_run import estimate_text

    click.echo(f"Rehearsal {report.run} of plan {report.plan} (suffix {report.suffix}): "
               f"{report.status}")
    click.echo(f"Estimated: {estimate_text(report.estimate)}")
    if report.elapsed_seconds is not None:
        error = (report.estimate.seconds - report.elapsed_seconds) / report.elapsed_seconds \
            if report.elapsed_seconds else 0.0
        click.echo(f"Measured: {report.elapsed_seconds:.1f} s (estimate {error:+.0%}), "
                   f"{report.bytes} bytes copied"
                   + (f" at {report.throughput / (1 << 20):.2f} MiB/s"
                      if report.throughput else ""))
    if report.kinds:
        table = Table("Time per step kind", ["KIND", "STEPS", "MEAN S", "ESTIMATED S"],
                      numeric={1, 2, 3})
        table.rows = [[k.kind, str(k.steps), f"{k.mean_seconds:.3f}",
                       f"{k.estimated_seconds:.3f}"] for k in report.kinds]
        click.echo()
        echo_table(table)
        click.echo()
    if report.not_rehearsed:
        click.echo(f"Not rehearsed: {len(report.not_rehearsed)} step(s), server cutovers stop "
                   "their source servers: " + ", ".join(report.not_rehearsed))
    if report.failed_steps:
        click.echo("Failed steps: " + ", ".join(report.failed_steps))
    if report.status == "interrupted":
        click.echo(f"Interrupted: run 'migrator rehearse {report.plan} --suffix "
                   f"{report.suffix}' again to continue.")
        return
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(report.cleanup_outcomes.items()))
    click.echo(f"Removed: {report.cleanup_run or 'nothing to remove'} "
               f"{report.cleanup_status or ''}" + (f" ({outcomes})" if outcomes else ""))
