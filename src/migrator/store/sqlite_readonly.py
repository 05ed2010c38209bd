"""A read-only look at a SQLite state database through the standard library alone.

``migrator status`` is what an operator runs in a loop beside ``execute``: importing
SQLAlchemy and Alembic to answer it costs about half a second of CPU, twenty times the query.
When the database is a plain SQLite file at exactly the schema this code ships, status reads
it here; in every other case (PostgreSQL, a missing or unreadable file, a schema behind or
unknown, a URL with options) :func:`open_current` returns None and the caller takes the
SQLAlchemy path, which owns every error message. Nothing here writes (``mode=ro``).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import migrator.migrations

# How long a read waits for a lock: as long as store/db.py's engines wait.
BUSY_TIMEOUT_S = 30.0

# The prefix of the URLs this module accepts: sqlite:///relative/or//absolute/path, no
# driver, no query options (those go through SQLAlchemy, which knows what they mean).
_PREFIX = "sqlite:///"
# ``revision: str = "0001_initial"`` / ``down_revision: str | None = None`` in a revision file.
_ASSIGNMENT = re.compile(
    r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(?:\"([^\"]*)\"|'([^']*)'|(None))\s*$",
    re.MULTILINE,
)


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL, else None."""
    if not url.startswith(_PREFIX) or "?" in url:
        return None
    path = url[len(_PREFIX):]
    if not path or path == ":memory:":
        return None
    return Path(path)


def shipped_head() -> str | None:
    """The head revision of the revision files shipped with this code, read as text (the
    Alembic scripts are not imported); None when they cannot be read that way."""
    versions = Path(migrator.migrations.__file__).parent / "versions"
    down_of: dict[str, str | None] = {}
    try:
        files = sorted(versions.glob("*.py"))
        for file in files:
            if file.name == "__init__.py":
                continue
            found: dict[str, str | None] = {}
            for match in _ASSIGNMENT.finditer(file.read_text(encoding="utf-8")):
                found.setdefault(match[1], match[2] or match[3] or None)
            if "revision" not in found or "down_revision" not in found:
                return None
            revision = found["revision"]
            if revision is None:
                return None
            down_of[revision] = found["down_revision"]
    except (OSError, UnicodeDecodeError):
        return None
    heads = set(down_of) - {down for down in down_of.values() if down is not None}
    return heads.pop() if len(heads) == 1 else None


def open_current(url: str) -> tuple[sqlite3.Connection, str] | None:
    """A read-only connection to the SQLite database of ``url`` and its revision, when the
    database exists and is at the shipped head; None otherwise (the caller falls back)."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return None
    head = shipped_head()
    if head is None:
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        conn.close()
        return None
    if rows != [(head,)]:
        conn.close()
        return None
    return conn, head
