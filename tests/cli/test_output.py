"""Table rendering: rich on a terminal, plain aligned text elsewhere."""

from __future__ import annotations

import io

import pytest

from migrator.cli.output import Table, echo_table, plain_table

TABLE = Table("Runs", ["RUN", "STEPS"], [["wave-1", "7"], ["w2", "12"]], numeric={1})


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_table_aligns_names_left_and_numbers_right() -> None:
    assert plain_table(TABLE) == (
        "Runs\n"
        "  RUN     STEPS\n"
        "  wave-1      7\n"
        "  w2         12"
    )


def test_a_terminal_gets_a_rich_table(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    echo_table(TABLE)
    drawn = terminal.getvalue()
    assert "┏━━━━━━━━┳━━━━━━━┓" in drawn
    assert "│ wave-1 │     7 │\n│ w2     │    12 │\n" in drawn


def test_a_pipe_gets_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stdout", pipe)
    echo_table(TABLE)
    assert pipe.getvalue() == plain_table(TABLE) + "\n"
