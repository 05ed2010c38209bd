"""``migrator execute PLAN``: verify, rehearse, register and run a plan file (or resume its
run), with progress on the terminal. ``migrator execute RUN`` still runs an existing run by
name (runs built by tests or registered earlier)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.progress import progress_display
from migrator.errors import PlanError, StepFailedError

if TYPE_CHECKING:
    from migrator.engine.executor import RunResult
    from migrator.operations.execute import DryRunReport

EXIT_INTERRUPTED = 130


@click.command("execute")
@click.argument("plan_or_run", metavar="PLAN")
@click.option("--resume", is_flag=True, help="Continue an interrupted, crashed or failed run.")
@click.option("--wave", type=click.IntRange(1), metavar="N",
              help="Run only wave N of the plan (earlier waves must have finished).")
@click.option("--dry-run", is_flag=True,
              help="Rehearse: check the plan, the inventory, the target's mappings, names and "
                   "quotas; write nothing anywhere.")
@click.option("--replan", is_flag=True,
              help="If the plan is stale (or was edited), plan again into the same file with "
                   "the same selection and execute the new plan.")
@click.option("--run", "run_name", metavar="NAME",
              help="Name of the run to register [default: the plan's name, -wave-N].")
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Configuration for --replan [default: the one the plan names].")
@click.option("--clouds-yaml", metavar="FILE", type=click.Path(dir_okay=False),
              help="clouds.yaml to read [default: $OS_CLIENT_CONFIG_FILE, then the usual "
                   "places].")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Steps at a time [default: transfer.metadata_workers, 8].")
@click.option("--parallel-transfers", type=click.IntRange(1, 256), metavar="N",
              help="Image and volume copies at a time [default: "
                   "transfer.parallel_transfers, 4].")
@click.option("--bandwidth", metavar="RATE",
              help="Cap on the bytes per second of every copy together, e.g. 100MiB "
                   "[default: transfer.bandwidth, none].")
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
    plan_or_run: str,
    resume: bool,
    wave: int | None,
    dry_run: bool,
    replan: bool,
    run_name: str | None,
    config_path: str | None,
    clouds_yaml: str | None,
    workers: int | None,
    parallel_transfers: int | None,
    bandwidth: str | None,
    max_attempts: int,
    force_unlock: bool,
) -> None:
    """Execute the plan file PLAN, checkpointed: verified (refused when stale unless
    --replan), checked against the target, registered as a run, executed. PLAN may also be the
    name of an existing run. Ctrl-C stops gracefully (resume later with --resume); a second
    Ctrl-C exits at once."""
    # Imported here, not at the top: the engine, SQLAlchemy and openstacksdk cost a second of
    # CPU that `migrator --help` should not pay.
    from migrator.operations.execute import execute_existing_run, execute_plan

    if not is_plan_file(plan_or_run):
        if wave or dry_run or replan:
            raise PlanError(f"no plan file {plan_or_run}: --wave, --dry-run and --replan need a "
                            "plan file")
        with progress_display() as observer:
            result = execute_existing_run(cli.db_url, plan_or_run, workers=workers or 8,
                                          resume=resume, force_unlock=force_unlock,
                                          max_attempts=max_attempts, observer=observer,
                                          clouds_yaml=clouds_yaml)
        report(result, plan_or_run)
        return
    rate: int | None = None
    if bandwidth is not None:
        from migrator.config import parse_bytes

        try:
            rate = parse_bytes(bandwidth)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--bandwidth") from None
    with progress_display() as observer:
        outcome = execute_plan(cli.db_url, plan_or_run, wave=wave, resume=resume,
                               replan=replan, dry_run=dry_run, run_name=run_name,
                               workers=workers or 8, workers_given=workers is not None,
                               parallel_transfers=parallel_transfers, bandwidth=rate,
                               transfer_progress=observer.transfers,
                               max_attempts=max_attempts, force_unlock=force_unlock,
                               clouds_yaml=clouds_yaml, config=config_path,
                               observer=observer)
    if outcome.replanned:
        click.echo(f"Replanned: {outcome.path} now holds plan {outcome.plan.content_hash[:12]} "
                   f"({len(outcome.plan.steps)} steps)")
    if outcome.dry_run is not None:
        render_dry_run(outcome.dry_run)
        return
    assert outcome.run is not None
    resume_hint = f"{plan_or_run}{f' --wave {wave}' if wave else ''}"
    report(outcome.run, resume_hint)


def is_plan_file(argument: str) -> bool:
    """A path to a file (or a name ending in .yaml/.yml) is a plan; anything else a run."""
    return Path(argument).is_file() or argument.endswith((".yaml", ".yml"))


def render_dry_run(report_: DryRunReport) -> None:
    click.echo(f"Dry run of plan {report_.plan}: {report_.steps} steps in wave(s) "
               f"{', '.join(map(str, report_.waves))}; nothing was written.")
    click.echo("Checked:")
    for check in report_.checks:
        click.echo(f"  - {check}")
    if report_.ok:
        click.echo("Result: ready to execute.")
        return
    for problem in report_.problems:
        click.echo(f"Problem: {problem}", err=True)
    raise PlanError(f"dry run of plan {report_.plan}: {len(report_.problems)} problem(s), "
                    f"first: {report_.problems[0]}")


def run_summary(result: RunResult) -> str:
    """``Run NAME: STATUS in N s (counts by state)``."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()) if n)
    return f"Run {result.run_name}: {result.status} in {result.elapsed_s:.1f} s ({counts})"


def report(result: RunResult, resume_hint: str) -> None:
    click.echo(run_summary(result))
    if result.status == "interrupted":
        click.echo(f"Resume with: migrator execute {resume_hint} --resume", err=True)
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
