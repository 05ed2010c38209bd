"""Which state database a command uses, resolved without SQLAlchemy (which costs a few tenths
of a second to import: `migrator --help` and `--version` must not pay it)."""

from __future__ import annotations

import os

DEFAULT_URL = "sqlite:///state/migrator.db"
ENV_VAR = "MIGRATOR_DB"


def resolve_url(cli_value: str | None = None) -> str:
    """The database URL: ``--db``, else ``$MIGRATOR_DB``, else ``sqlite:///state/migrator.db``.

    A bare path (no ``://``) is taken as a SQLite file.
    """
    url = cli_value or os.environ.get(ENV_VAR) or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url
