"""``migrator status``: progress of runs and tenants."""

from __future__ import annotations

from datetime import datetime

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import Table, echo_json, echo_table, format_option
from migrator.operations.status import StatusReport, Throughput, status

# Above this many tenants the kinds are counted over all of them (--tenant shows one's).
KIND_ROWS_TENANTS = 5
MAX_FAILED_ROWS = 20


@click.command("status")
@click.option("--run", "run_name", metavar="NAME", help="Only this run, broken down by tenant.")
@click.option("--tenant", metavar="TENANT", help="Only this tenant's steps.")
@format_option()
@pass_cli
def status_command(
    cli: CliContext, run_name: str | None, tenant: str | None, output_format: str
) -> None:
    """Show runs and tenants: steps by kind and state, bytes moved and left, rate and ETA,
    failed steps with their last error, and the executors at work."""
    report = status(cli.db_url, run=run_name, tenant=tenant)
    if output_format == "json":
        echo_json(report.as_dict())
        return
    click.echo(f"State database: {report.database} (schema {report.revision})")
    if not report.runs:
        click.echo("No runs yet.")
        return
    for table in status_tables(report):
        click.echo()
        echo_table(table)


def status_tables(report: StatusReport) -> list[Table]:
    states = report.states
    data = any(r.data.moved or r.data.left or r.data.eta_s is not None for r in report.runs)
    extra = ["MOVED", "LEFT", "RATE", "ETA"] if data else []
    runs = Table("Runs", ["RUN", "STATUS", "STEPS", *states, *extra],
                 numeric=_numeric(2, states, len(extra)))
    for run in report.runs:
        status_text = run.status + (" (dry run)" if run.dry_run else "")
        runs.rows.append([run.name, status_text, str(run.total), *_counts(run.steps, states),
                          *(_throughput(run.data) if data else [])])
    title = f"Tenants in run {report.run}" if report.run else "Tenants"
    tenants = Table(title, ["TENANT", "STEPS", *states, *extra],
                    numeric=_numeric(1, states, len(extra)))
    for tenant in report.tenants:
        tenants.rows.append([tenant.tenant or "-", str(tenant.total),
                             *_counts(tenant.steps, states),
                             *(_throughput(tenant.data) if data else [])])
    return [runs, tenants, kind_table(report, states), *server_tables(report),
            *failure_tables(report), *worker_tables(report)]


def server_tables(report: StatusReport) -> list[Table]:
    """Per tenant: servers cut over, total and worst measured downtime."""
    if not report.servers:
        return []
    table = Table("Servers cut over (downtime: source stopped -> target ACTIVE and verified)",
                  ["TENANT", "SERVERS", "TOTAL DOWNTIME", "WORST", "COPY IN WINDOW"],
                  numeric={1, 2, 3, 4})
    for row in report.servers:
        table.rows.append([row.tenant or "-", str(row.servers), f"{row.total_seconds:.1f} s",
                           f"{row.worst_seconds:.1f} s", f"{row.copy_seconds:.1f} s"])
    return [table]


def kind_table(report: StatusReport, states: list[str]) -> Table:
    """Per tenant and kind, or (more than KIND_ROWS_TENANTS tenants) per kind overall."""
    if len(report.tenants) <= KIND_ROWS_TENANTS:
        table = Table("Steps by tenant and kind", ["TENANT", "KIND", "STEPS", *states],
                      numeric=_numeric(2, states))
        for tenant in report.tenants:
            for kind, counts in tenant.kinds.items():
                table.rows.append([tenant.tenant or "-", kind, str(sum(counts.values())),
                                   *_counts(counts, states)])
        return table
    overall: dict[str, dict[str, int]] = {}
    for tenant in report.tenants:
        for kind, counts in tenant.kinds.items():
            into = overall.setdefault(kind, {})
            for state, n in counts.items():
                into[state] = into.get(state, 0) + n
    table = Table(f"Steps by kind ({len(report.tenants)} tenants; --tenant T for one)",
                  ["KIND", "STEPS", *states], numeric=_numeric(1, states))
    for kind, counts in overall.items():
        table.rows.append([kind, str(sum(counts.values())), *_counts(counts, states)])
    return table


def failure_tables(report: StatusReport) -> list[Table]:
    if not report.failed:
        return []
    table = Table(f"Failed steps ({len(report.failed)})",
                  ["RUN", "TENANT", "KIND", "NAME", "ATTEMPTS", "LAST ERROR"], numeric={4})
    for step in report.failed[:MAX_FAILED_ROWS]:
        table.rows.append([step.run, step.tenant or "-", step.kind, step.name or step.key,
                           str(step.attempts), step.last_error or "-"])
    if len(report.failed) > MAX_FAILED_ROWS:
        table.rows.append(["", "", "", f"... {len(report.failed) - MAX_FAILED_ROWS} more "
                           "(--format json, or migrator audit)", "", ""])
    return [table]


def worker_tables(report: StatusReport) -> list[Table]:
    """The worker processes of the runs (host, pid, heartbeat, steps held), while runs
    execute; steps held by an owner that is no worker of the table (a run executed before
    workers existed) are shown too."""
    if not report.workers and not report.processes:
        return []
    table = Table("Workers", ["RUN", "WORKER", "HOST", "PID", "SLOTS", "STEPS",
                              "LAST HEARTBEAT"], numeric={3, 4, 5})
    held = {(w.run, w.owner): w.steps for w in report.workers}
    for p in report.processes:
        table.rows.append([p.run, p.name, p.host, str(p.pid), str(p.slots),
                           str(held.pop((p.run, p.name), 0)), _time(p.heartbeat_at)])
    for (run, owner), steps in sorted(held.items()):
        table.rows.append([run, owner, "-", "-", "-", str(steps), "-"])
    return [table]


def _numeric(first: int, states: list[str], extra: int = 0) -> set[int]:
    return set(range(first, first + 1 + len(states) + extra))


def _counts(steps: dict[str, int], states: list[str]) -> list[str]:
    return [str(steps.get(state, 0)) for state in states]


def _throughput(data: Throughput) -> list[str]:
    return [human_bytes(data.moved), human_bytes(data.left),
            f"{human_bytes(int(data.rate))}/s" if data.rate is not None else "-",
            human_duration(data.eta_s) if data.eta_s is not None else "-"]


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def human_bytes(n: int) -> str:
    """1023 B, 1.5 KiB, 20.0 MiB, ..."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def human_duration(seconds: float) -> str:
    """45s, 3m20s, 1h02m, 2d04h."""
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
