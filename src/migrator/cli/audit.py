"""``migrator audit``: every transition (who, when, which attempt, what happened) and the
source -> target map, streamed as table, JSON or CSV."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from migrator import jsoncodec
from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import StreamTable, echo_csv, echo_json_stream

if TYPE_CHECKING:
    from migrator.operations.audit import AuditLog, EventRow, IdMapRow

EVENT_HEADERS = ["TIME", "RUN", "TENANT", "KIND", "NAME", "EVENT", "FROM", "TO", "ATTEMPT",
                 "ACTOR", "PID", "DETAIL"]
EVENT_FIELDS = ["id", "at", "run", "tenant", "kind", "name", "step", "trigger", "from_state",
                "to_state", "attempt", "actor", "pid", "error", "detail"]
MAP_HEADERS = ["RUN", "TENANT", "KIND", "NAME", "SOURCE ID", "TARGET ID", "STATE", "BYTES",
               "MD5", "SHA512", "COMPLETED"]
MAP_FIELDS = ["run", "tenant", "kind", "name", "source_id", "target_id", "state", "bytes",
              "md5", "sha512", "completed_at"]
# The table shows the start of a sha512 (the CSV and JSON hold it whole).
SHA512_SHOWN = 16
TIME_WIDTH = 23  # 2026-12-02 14:30:05.123


def table_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if value is not None else "-"


def iso_time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value is not None else None


def event_record(event: EventRow) -> dict[str, Any]:
    return {"id": event.id, "at": iso_time(event.at), "run": event.run, "tenant": event.tenant,
            "kind": event.kind, "name": event.name, "step": event.step,
            "trigger": event.trigger, "from_state": event.from_state,
            "to_state": event.to_state, "attempt": event.attempt, "actor": event.actor,
            "pid": event.pid, "error": event.error, "detail": event.detail}


def map_record(row: IdMapRow) -> dict[str, Any]:
    return {"run": row.run, "tenant": row.tenant, "kind": row.kind, "name": row.name,
            "source_id": row.source_id, "target_id": row.target_id, "state": row.state,
            "bytes": row.data.bytes, "md5": row.data.md5, "sha512": row.data.sha512,
            "completed_at": iso_time(row.completed_at)}


def event_cells(event: EventRow) -> list[str]:
    return [table_time(event.at), event.run, event.tenant or "-", event.kind or "-",
            event.name or "-", event.trigger, event.from_state or "-", event.to_state or "-",
            str(event.attempt) if event.attempt is not None else "-", event.actor,
            str(event.pid), detail_text(event)]


def map_cells(row: IdMapRow) -> list[str]:
    sha = row.data.sha512
    return [row.run, row.tenant or "-", row.kind, row.name or "-", row.source_id or "-",
            row.target_id or "-", row.state,
            str(row.data.bytes) if row.data.bytes is not None else "-",
            row.data.md5 or "-", sha[:SHA512_SHOWN] if sha else "-",
            table_time(row.completed_at)]


def event_csv(event: EventRow) -> list[Any]:
    """The CSV row of an event: :func:`event_record`'s values, the detail as compact JSON."""
    return [event.id, iso_time(event.at), event.run, event.tenant, event.kind, event.name,
            event.step, event.trigger, event.from_state, event.to_state, event.attempt,
            event.actor, event.pid, event.error, jsoncodec.canonical(event.detail)]


@click.command("audit")
@click.option("--run", "run_name", metavar="NAME", help="Only this run [default: every run].")
@click.option("--tenant", metavar="TENANT", help="Only this tenant's steps (legacy name).")
@click.option("--kind", metavar="KIND", help="Only steps of this kind (image, volume, ...).")
@click.option("--since", metavar="TIME",
              help="Only events since TIME: ISO 8601 (UTC unless a zone is given) or a "
                   "duration back from now (90s, 15m, 2h, 3d).")
@click.option("--section", type=click.Choice(["events", "id-map", "all"]),
              help="What to print [default: all; for csv, which holds one table: events].")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True,
              help="table: aligned text; json and csv: every field, sha512 whole.")
@pass_cli
def audit_command(cli: CliContext, run_name: str | None, tenant: str | None,
                  kind: str | None, since: str | None, section: str | None,
                  output_format: str) -> None:
    """Show the event log (every transition: time, actor user@host and pid, attempt, detail,
    error) and the source -> target id map with the bytes and checksums of moved data.
    Rows are streamed from the state database as they are read."""
    # Imported here: SQLAlchemy is not for `--help`.
    from migrator.operations.audit import open_audit, parse_since

    since_at = parse_since(since) if since else None
    if section is None:
        section = "events" if output_format == "csv" else "all"
    elif section == "all" and output_format == "csv":
        raise click.UsageError("csv holds one table: choose --section events or id-map")
    with open_audit(cli.db_url, run=run_name, tenant=tenant, kind=kind,
                    since=since_at) as log:
        if output_format == "json":
            sections: list[tuple[str, Iterator[dict[str, Any]]]] = []
            if section in ("events", "all"):
                sections.append(("events", (event_record(e) for e in log.events())))
            if section in ("id-map", "all"):
                sections.append(("id_map", (map_record(r) for r in log.id_map())))
            echo_json_stream(log.scope(), sections)
        elif output_format == "csv":
            if section == "events":
                echo_csv(EVENT_FIELDS, (event_csv(e) for e in log.events()))
            else:
                echo_csv(MAP_FIELDS, (list(map_record(r).values()) for r in log.id_map()))
        else:
            _tables(log, section)


def _tables(log: AuditLog, section: str) -> None:
    w = log.widths
    scope = ", ".join(
        [f"run {log.runs[0]}" if len(log.runs) == 1 else f"{len(log.runs)} runs"]
        + [f"tenant {log.tenant}"] * (log.tenant is not None)
        + [f"kind {log.kind}"] * (log.kind is not None)
        + [f"since {table_time(log.since)}"] * (log.since is not None))
    if section in ("events", "all"):
        table = StreamTable(
            f"Events of {scope} (times in UTC)", EVENT_HEADERS,
            [TIME_WIDTH, w.run, max(w.tenant, 1), max(w.kind, 1), max(w.name, 1), 10, 11, 11,
             7, w.actor, 7, 0], numeric={8, 10})
        table.start()
        for event in log.events():
            table.row(event_cells(event))
    if section in ("id-map", "all"):
        if section == "all":
            click.echo()
        table = StreamTable(
            f"Source -> target of {scope} (sha512: first {SHA512_SHOWN} hex digits)",
            MAP_HEADERS,
            [w.run, max(w.tenant, 1), w.kind, max(w.name, 1), max(w.source_id, 1),
             max(w.target_id, 1), 11, 12, 32, SHA512_SHOWN, TIME_WIDTH], numeric={7})
        table.start()
        for row in log.id_map():
            table.row(map_cells(row))


def detail_text(event: EventRow) -> str:
    """An event's detail in one line: the error first, then what the engine recorded."""
    detail = dict(event.detail)
    parts: list[str] = []
    error = detail.pop("error", None)
    if error is not None:
        parts.append(f"error: {error}" + (" (final)" if detail.pop("final", False) else ""))
    if event.trigger == "checkpoint":
        phase = detail.pop("phase", None)
        data = detail.pop("data", None) or {}
        text = ", ".join(f"{k}={_short(v)}" for k, v in data.items())
        parts.append(f"phase {phase}" + (f": {text}" if text else ""))
    detail.pop("attempt", None)  # the ATTEMPT column
    parts.extend(f"{k}={_short(v)}" for k, v in detail.items())
    return "; ".join(parts)


def _short(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)
