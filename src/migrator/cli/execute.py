"""``migrator execute PLAN``: verify, rehearse, register and run a plan file (or resume its
run), with progress on the terminal. ``migrator execute RUN`` still runs an existing run by
name (runs built by tests or registered earlier)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import echo_json, format_option
from migrator.cli.progress import progress_display
from migrator.errors import PlanError, RunStoppedError, StepFailedError

if TYPE_CHECKING:
    from migrator.engine.executor import RunResult
    from migrator.operations.execute import DryRunReport, ExecuteOptions

EXIT_INTERRUPTED = 130
# The default of --max-plan-size: planfile.DEFAULT_MAX_PLAN_BYTES, written here so that
# `migrator --help` does not import the plan code (a test checks that they agree).
DEFAULT_MAX_PLAN_SIZE = "512MiB"


@click.command("execute")
@click.argument("plan_or_run", metavar="PLAN")
@click.option("--resume", is_flag=True, help="Continue an interrupted, crashed or failed run.")
@click.option("--wave", type=click.IntRange(1), metavar="N",
              help="Run only wave N of the plan (earlier waves must have finished).")
@click.option("--dry-run", is_flag=True,
              help="Every read and check of a real run (plan, inventory, credentials, "
                   "permissions, quotas and capacity, types, formats, an estimated duration); "
                   "nothing written on either cloud, the findings recorded as a dry-run run.")
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
    default=None,
    help="Tries per step before it fails for good and blocks its dependents "
         "[default: retries.step_attempts, 3].",
)
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Local worker processes (each with --workers threads); more processes on "
                   "other hosts join with 'migrator worker'.")
@click.option(
    "--force-unlock",
    is_flag=True,
    hidden=True,
    help="Obsolete: a dead executor's steps are taken over when its leases expire.",
)
@click.option("--max-plan-size", metavar="SIZE", envvar="MIGRATOR_MAX_PLAN_SIZE",
              default=DEFAULT_MAX_PLAN_SIZE, show_default=True,
              help="Refuse a bigger plan file unread (a plan of 10,000 tenants is about "
                   "190 MiB) [env: MIGRATOR_MAX_PLAN_SIZE].")
@format_option("table: progress and summary as text; json: the outcome (or the error) as "
               "JSON, no progress lines.")
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
    max_attempts: int | None,
    processes: int,
    force_unlock: bool,
    max_plan_size: str,
    output_format: str,
) -> None:
    """Execute the plan file PLAN, checkpointed: verified (refused when stale unless
    --replan), checked against the target, registered as a run, executed. PLAN may also be the
    name of an existing run. Ctrl-C stops gracefully (resume later with --resume); a second
    Ctrl-C exits at once."""
    # Imported here, not at the top: the engine, SQLAlchemy and openstacksdk cost a second of
    # CPU that `migrator --help` should not pay.
    from migrator.operations.execute import (
        ExecuteOptions,
        execute_existing_run,
        execute_plan,
    )

    as_json = output_format == "json"
    options = ExecuteOptions(
        wave=wave, resume=resume, replan=replan, dry_run=dry_run, run_name=run_name,
        workers=workers, max_attempts=max_attempts, force_unlock=force_unlock,
        clouds_yaml=clouds_yaml, config=config_path, parallel_transfers=parallel_transfers,
        bandwidth=None if bandwidth is None else _size_option(bandwidth, "--bandwidth"),
        max_plan_bytes=_size_option(max_plan_size, "--max-plan-size"), processes=processes)
    if not is_plan_file(plan_or_run):
        if wave or dry_run or replan:
            raise PlanError(f"no plan file {plan_or_run}: --wave, --dry-run and --replan need a "
                            "plan file")
        with _progress(options, as_json) as observed:
            result = execute_existing_run(cli.db_url, plan_or_run, observed)
        report(result, plan_or_run, as_json)
        return
    with _progress(options, as_json) as observed:
        outcome = execute_plan(cli.db_url, plan_or_run, observed)
    if outcome.replanned and not as_json:
        click.echo(f"Replanned: {outcome.path} now holds plan {outcome.plan.content_hash[:12]} "
                   f"({len(outcome.plan.steps)} steps)")
    if outcome.dry_run is not None:
        render_dry_run(outcome.dry_run, as_json)
        return
    assert outcome.run is not None
    resume_hint = f"{plan_or_run}{f' --wave {wave}' if wave else ''}"
    report(outcome.run, resume_hint, as_json)


@contextmanager
def _progress(options: ExecuteOptions, quiet: bool) -> Iterator[ExecuteOptions]:
    """``options`` with the progress display as observer (none with ``--format json``: stdout
    holds the one JSON document)."""
    if quiet:
        yield options
        return
    with progress_display() as observer:
        yield replace(options, observer=observer, transfer_progress=observer.transfers)


def _size_option(value: str, name: str) -> int:
    from migrator.config import parse_bytes

    try:
        return parse_bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def is_plan_file(argument: str) -> bool:
    """A path to a file (or a name ending in .yaml/.yml) is a plan; anything else a run."""
    return Path(argument).is_file() or argument.endswith((".yaml", ".yml"))


def render_dry_run(report_: DryRunReport, as_json: bool = False) -> None:
    from migrator.cli.dry_run import render_deep

    deep = report_.deep
    errors = report_.problems + ([] if deep is None else [
        (f"tenant {f.tenant}: " if f.tenant else "") + f"{f.check}: {f.message}"
        for f in deep.findings if f.result == "error"])
    count = len(errors)
    error = None if not errors else PlanError(
        errors[0] if count == 1 else
        f"dry run of plan {report_.plan}: {count} problems (each on a line below)", errors)
    if as_json:
        document: dict[str, object] = {"dry_run": {
            "plan": report_.plan, "steps": report_.steps, "waves": report_.waves,
            "checks": list(report_.checks), "problems": report_.problems, "ok": report_.ok,
            **(deep.as_dict() if deep is not None else {})}}
        if error is not None:
            # The error as every command prints it in JSON, beside the findings.
            document["error"] = {"message": " ".join(str(error).splitlines()),
                                 "exit_code": error.exit_code,
                                 "problems": [" ".join(p.splitlines()) for p in errors]}
        echo_json(document)
    else:
        click.echo(f"Dry run of plan {report_.plan}: {report_.steps} steps in wave(s) "
                   f"{', '.join(map(str, report_.waves))}; nothing was written on either "
                   "cloud" + (f" (findings recorded as run {report_.run_name})."
                              if report_.run_name else "."))
        click.echo("Checked:")
        for check in report_.checks:
            click.echo(f"  - {check}")
        if deep is not None:
            render_deep(deep)
        if report_.ok:
            click.echo("Result: ready to execute.")
    if error is not None:
        raise error


def run_summary(result: RunResult) -> str:
    """``Run NAME: STATUS in N s (counts by state)``."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()) if n)
    return f"Run {result.run_name}: {result.status} in {result.elapsed_s:.1f} s ({counts})"


def report(result: RunResult, resume_hint: str, as_json: bool = False) -> None:
    cause = result.stopped_by
    if as_json:
        echo_json({"run": {"name": result.run_name, "status": result.status,
                           "elapsed_s": round(result.elapsed_s, 3), "counts": result.counts,
                           "completed": result.completed, "failed_steps": result.failed_steps,
                           "stopped_by": cause.message if cause is not None else None}})
    else:
        click.echo(run_summary(result))
    if cause is not None:
        raise RunStoppedError(
            f"{cause.message}; run {result.run_name} stopped (nothing is lost: "
            f"{_waiting(result)} wait); once it answers again: migrator execute "
            f"{resume_hint} --resume", cause)
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


def _waiting(result: RunResult) -> str:
    left = sum(n for state, n in result.counts.items() if state not in ("done", "skipped"))
    return f"{left} step{'s' if left != 1 else ''}"
