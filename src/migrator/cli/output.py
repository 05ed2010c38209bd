"""Rendering: rich tables on a terminal, plain aligned text otherwise, JSON on request.

Plain text is what pipes, logs and tests see: stable, no colour, no box drawing.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    # Indexes of columns holding numbers: right-aligned.
    numeric: set[int] = field(default_factory=set)


def echo_table(table: Table) -> None:
    if sys.stdout.isatty():
        _rich_table(table)
    else:
        click.echo(plain_table(table))


def plain_table(table: Table) -> str:
    widths = [
        max(len(cell) for cell in column)
        for column in zip(table.headers, *table.rows, strict=True)
    ]
    lines = [table.title]
    for cells in [table.headers, *table.rows]:
        lines.append(plain_row(cells, widths, table.numeric))
    return "\n".join(lines)


def plain_row(cells: Sequence[str], widths: Sequence[int], numeric: set[int]) -> str:
    padded = [
        cell.rjust(width) if index in numeric else cell.ljust(width)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  " + "  ".join(padded).rstrip()


@dataclass
class StreamTable:
    """A table printed row by row as the rows arrive (an audit of a million events): the
    column widths are known beforehand (``widths``, at least the header's), and the layout
    is :func:`plain_table`'s, so the same rows print the same either way."""

    title: str
    headers: list[str]
    widths: list[int]
    numeric: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.widths = [max(w, len(h)) for w, h in zip(self.widths, self.headers, strict=True)]

    def start(self) -> None:
        click.echo(self.title)
        header = plain_row(self.headers, self.widths, self.numeric)
        click.echo(click.style(header, bold=True) if sys.stdout.isatty() else header)

    def row(self, cells: Sequence[str]) -> None:
        click.echo(plain_row(cells, self.widths, self.numeric))


def echo_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """CSV (RFC 4180, ``\\r\\n`` line ends) on stdout, one row written as it comes."""
    out = sys.stdout
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(rows)  # None is written as an empty field


def echo_json_stream(head: Mapping[str, Any],
                     sections: Sequence[tuple[str, Iterable[Mapping[str, Any]]]]) -> None:
    """One JSON object: the keys of ``head``, then each section as a list whose items are
    written as they come (one per line), so a million rows are never held at once."""
    out = sys.stdout
    out.write("{\n")
    first = True
    for key, value in head.items():
        out.write(("" if first else ",\n") + f"  {json.dumps(key)}: {json.dumps(value)}")
        first = False
    for key, items in sections:
        out.write(("" if first else ",\n") + f"  {json.dumps(key)}: [")
        first = False
        empty = True
        for item in items:
            out.write(("\n    " if empty else ",\n    ") + json.dumps(item))
            empty = False
        out.write("]" if empty else "\n  ]")
    out.write("\n}\n")
    out.flush()


def _rich_table(table: Table) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    rich_table = RichTable(title=table.title, title_justify="left")
    for index, header in enumerate(table.headers):
        numeric = index in table.numeric
        # Names and states stay on one line; a narrow terminal squeezes nothing else.
        rich_table.add_column(header, justify="right" if numeric else "left", no_wrap=True)
    for row in table.rows:
        rich_table.add_row(*row)
    Console().print(rich_table)


# ctx.meta is shared by a command's context and the group's: the error boundary (main.py)
# reads there whether the command was asked for JSON, and whether it has printed its document
# already (stdout then holds that one document; the error goes to stderr only).
JSON_OUTPUT = "migrator.json_output"
JSON_PRINTED = "migrator.json_printed"


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[JSON_PRINTED] = True


def remember_format(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Callback of a ``--format`` option: with ``json``, errors are printed as JSON too."""
    ctx.meta[JSON_OUTPUT] = value == "json"
    return value


def format_option(help_text: str = "table: drawn on a terminal, plain text in a pipe; json: "
                  "for scripts (errors too).") -> Any:
    """The ``--format table|json`` option of a command."""
    return click.option("--format", "output_format", type=click.Choice(["table", "json"]),
                        default="table", show_default=True, help=help_text,
                        callback=remember_format)
