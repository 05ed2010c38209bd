"""Schema management of the state database: Alembic, driven from code.

The Alembic environment ships inside the package (``migrator.migrations``), so no
``alembic.ini`` is needed: the configuration is built here and every command runs on the
caller's engine. These functions are the only way the schema changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

import migrator.migrations
from migrator.errors import DatabaseError, SchemaBehindError
from migrator.store.db import install_begin_immediate, is_sqlite

VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Revision:
    """One schema revision, as ``history()`` lists it (oldest first)."""

    id: str
    down_revision: str | None
    message: str
    is_head: bool


def migrations_dir() -> Path:
    """The folder of the Alembic environment inside the installed package."""
    return Path(migrator.migrations.__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code; ``connection`` is handed to env.py."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # New revision files are named after their id alone: versions/0002_add_x.py.
    config.set_main_option("file_template", "%%(rev)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The revision this code needs (the single head of the revision graph)."""
    revision = _scripts().get_current_head()
    if revision is None:  # pragma: no cover - the package always ships revisions
        raise DatabaseError("the migrator package contains no schema revisions")
    return revision


def history() -> list[Revision]:
    """Every revision, oldest first."""
    scripts = _scripts()
    heads = set(scripts.get_heads())
    revisions = [
        Revision(
            id=script.revision,
            down_revision=_single(script.down_revision),
            message=script.doc or "",
            is_head=script.revision in heads,
        )
        for script in scripts.walk_revisions()
    ]
    return list(reversed(revisions))


def _single(down: str | Sequence[str] | None) -> str | None:
    if down is not None and not isinstance(down, str):
        return ",".join(down)
    return down


def current(engine: Engine) -> str | None:
    """The database's revision, or None when it has no schema yet."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def has_unversioned_tables(engine: Engine) -> bool:
    """True when the database has tables but no Alembic revision (not made by migrator)."""
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
    return bool(names) and VERSION_TABLE not in names


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (all revisions in one transaction)."""
    with _migration_connection(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to ``revision`` ("base" drops everything)."""
    with _migration_connection(engine) as conn:
        command.downgrade(alembic_config(conn), revision)


def check_current(engine: Engine) -> None:
    """Refuse a database whose schema is not the one this code needs.

    Raises SchemaBehindError (behind, or no schema: ``migrator init`` fixes it) or DatabaseError
    (a revision this code does not know, or tables that migrator did not create).
    """
    found = check_upgradable(engine)
    if found == head():
        return
    where = _where(engine)
    if found is None:
        raise SchemaBehindError(
            f"the state database at {where} has no schema yet; run 'migrator init'"
        )
    raise SchemaBehindError(
        f"the state database at {where} is at revision {found} but this migrator needs "
        f"{head()}; run 'migrator init' (or 'migrator db upgrade')"
    )


def check_upgradable(engine: Engine) -> str | None:
    """The database's revision, after refusing a database that ``upgrade`` must not touch:
    one at a revision this code does not know (a newer migrator wrote it) or one with tables
    but no revision (not a migrator database)."""
    found = current(engine)
    if found is None:
        if has_unversioned_tables(engine):
            raise DatabaseError(
                f"the database at {_where(engine)} has tables but no migrator schema revision; "
                "is it a migrator state database?"
            )
        return None
    if found not in {rev.id for rev in history()}:
        raise DatabaseError(
            f"the state database at {_where(engine)} is at revision {found}, which this "
            f"migrator does not know (it needs {head()}); was it upgraded by a newer migrator?"
        )
    return found


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction, the way schema changes must run.

    On SQLite foreign keys are switched off for the duration, then checked before commit:
    batch migrations copy and drop tables, which the enforced constraints would refuse or
    cascade (SQLite's documented procedure for schema changes; the pragma is a no-op inside a
    transaction, hence before BEGIN).
    """
    if not is_sqlite(engine):
        with engine.begin() as conn:
            yield conn
        return
    install_begin_immediate(engine)
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise DatabaseError(
                        f"the schema change left {len(problems)} broken foreign key(s), first in "
                        f"table {problems[0][0]}; rolled back"
                    )
        finally:
            raw.execute("PRAGMA foreign_keys=ON")
