"""``migrator report``: a run's report for the tenant's owners, as one self-contained HTML
file (or JSON)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from migrator.cli.audit import map_record
from migrator.cli.context import CliContext, pass_cli
from migrator.errors import ConfigError

if TYPE_CHECKING:
    from migrator.operations.report import RunReport


@click.command("report")
@click.option("--run", "run_name", metavar="NAME", help="The run [default: the latest].")
@click.option("--tenant", metavar="TENANT", help="Only this tenant.")
@click.option("-o", "--output", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (FILE.html, FILE.json) [default for json: standard output].")
@click.option("--format", "output_format", type=click.Choice(["html", "json"]),
              help="[default: from the file's extension, else html]")
@pass_cli
def report_command(cli: CliContext, run_name: str | None, tenant: str | None,
                   output: Path | None, output_format: str | None) -> None:
    """Write the run's report: summary, per-tenant table (resources by kind and state, bytes,
    durations, verification), failures with their errors, timeline, and per tenant the id
    map. The HTML needs no network to open; every name is escaped."""
    # Imported here: SQLAlchemy is not for `--help`.
    from migrator.operations.report import open_report
    from migrator.operations.verify import latest_run_name

    fmt = output_format or ("json" if output and output.suffix.lower() == ".json" else "html")
    if fmt == "html" and output is None:
        raise click.UsageError("an HTML report needs a file: -o FILE.html")
    run = run_name or latest_run_name(cli.db_url)
    with open_report(cli.db_url, run, tenant=tenant) as report:
        if output is None:
            _write(sys.stdout, report, fmt)
            return
        written = _write_file(output, report, fmt)
    click.echo(f"Wrote the report of run {run}"
               + (f", tenant {tenant}" if tenant else "") + f" to {output} "
               f"({written} bytes).")


def _write(out: TextIO, report: RunReport, fmt: str) -> None:
    if fmt == "html":
        from migrator.cli.report_html import write_report

        write_report(out, report)
    else:
        write_json(out, report)


def _write_file(path: Path, report: RunReport, fmt: str) -> int:
    """Into a temporary file beside ``path``, renamed over it when complete: a report is
    never left half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            _write(out, report, fmt)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the report: {exc.strerror}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


def write_json(out: TextIO, report: RunReport) -> None:
    """The report's content as one JSON object, the id map streamed into it."""
    data: dict[str, Any] = report.as_dict()
    text = json.dumps(data, indent=2)
    out.write(text[:-2] + ',\n  "id_map": [')  # reopen the object for the streamed list
    first = True
    for row in report.id_map():
        out.write(("\n    " if first else ",\n    ") + json.dumps(map_record(row)))
        first = False
    out.write("]\n}\n" if first else "\n  ]\n}\n")
