"""Bulk inserts through the DBAPI's ``executemany``: :func:`insert_many`.

Why not ``connection.execute(insert(table), list_of_dicts)``: SQLAlchemy then builds and
processes every row's parameters in Python (most of the 18 s it took to register a plan of
205,000 steps and 300,000 dependencies). Here the statement is compiled once, each column's
bind processor (the JSON serialiser, SQLite's datetime text) is looked up once, values common
to every row are processed once, and the rows go to the driver as tuples, in the same
transaction as everything else on ``conn``. The values stored are the ones SQLAlchemy would
have stored: the processors are the column types' own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, insert
from sqlalchemy.sql.expression import TableClause

BATCH = 5_000  # rows per executemany: bounds the parameter list held at once
# SQLite's page cache during a bulk insert (KiB; the default is 2 MiB). The unique and
# secondary indexes of 200,000 steps outgrow 2 MiB, and every insert then rereads index pages
# from the OS: with 64 MiB the steps go in twice as fast. Set for the bulk insert only, so
# the executor's many connections keep the small default.
BULK_CACHE_KIB = 65_536


@contextmanager
def bulk_cache(conn: Connection) -> Iterator[None]:
    """A larger SQLite page cache on ``conn`` for the duration of the block (no-op on other
    databases)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    previous = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(previous or -2000)}")


def insert_many(conn: Connection, table: TableClause, columns: Sequence[str],
                rows: Iterable[Sequence[Any]], *, constants: Mapping[str, Any] | None = None,
                batch: int = BATCH) -> int:
    """INSERT ``rows`` (tuples of values in ``columns`` order) into ``table``, every row also
    getting ``constants``; returns the number of rows inserted."""
    dialect = conn.dialect
    fixed = dict(constants or {})
    names = [*fixed, *columns]
    compiled = insert(table).values({name: bindparam(name) for name in names}).compile(
        dialect=dialect)

    def processor(name: str) -> Callable[[Any], Any] | None:
        column_type = table.c[name].type
        found: Callable[[Any], Any] | None = column_type.dialect_impl(dialect).bind_processor(
            dialect)
        return found

    head: list[Any] = []
    for name, value in fixed.items():
        process = processor(name)
        head.append(process(value) if process is not None else value)
    varying = [(i, p) for i, p in ((i, processor(name)) for i, name in enumerate(columns))
               if p is not None]
    positional = bool(compiled.positional)
    # The compiled statement lists its parameters in the table's column order.
    order = [names.index(name) for name in compiled.positiontup or ()]
    reorder = (itemgetter(*order) if positional and len(order) > 1
               and order != list(range(len(names))) else None)
    sql = compiled.string
    done = 0
    chunk: list[Any] = []
    for row in rows:
        values = list(row)
        for i, process in varying:
            values[i] = process(values[i])
        full = head + values
        if not positional:
            chunk.append(dict(zip(names, full, strict=True)))
        elif reorder is not None:
            chunk.append(reorder(full))
        else:
            chunk.append(tuple(full))
        done += 1
        if len(chunk) >= batch:
            conn.exec_driver_sql(sql, chunk)
            chunk = []
    if chunk:
        conn.exec_driver_sql(sql, chunk)
    return done
