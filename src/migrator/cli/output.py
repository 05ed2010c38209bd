"""Rendering: rich tables on a terminal, plain aligned text otherwise, JSON on request.

Plain text is what pipes, logs and tests see: stable, no colour, no box drawing.
"""

from __future__ import annotations

import json
import sys
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
        padded = [
            cell.rjust(width) if index in table.numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        lines.append("  " + "  ".join(padded).rstrip())
    return "\n".join(lines)


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
