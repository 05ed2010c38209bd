"""Operations on the state database's schema: init, upgrade, current revision, history."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from migrator.errors import NotFoundError
from migrator.operations.context import open_engine
from migrator.store import schema
from migrator.store.db import redact
from migrator.store.schema import Revision


class SchemaAction(StrEnum):
    CREATED = "created"  # the database had no schema: every revision was applied
    UPGRADED = "upgraded"  # it was at an older revision
    CURRENT = "current"  # it was already at the requested revision: nothing done


@dataclass(frozen=True)
class UpgradeResult:
    database: str  # URL with the password hidden
    action: SchemaAction
    from_revision: str | None
    revision: str | None


InitResult = UpgradeResult


@dataclass(frozen=True)
class CurrentRevision:
    database: str
    revision: str | None
    head: str

    @property
    def is_current(self) -> bool:
        return self.revision == self.head


def init_state(url: str) -> InitResult:
    """Create the state database (and its SQLite folder) or bring it to head. Idempotent."""
    return _upgrade(url, "head", create=True)


def upgrade_db(url: str, revision: str = "head") -> UpgradeResult:
    """Upgrade an existing state database; unlike ``init_state`` it never creates one."""
    return _upgrade(url, revision, create=False)


def _upgrade(url: str, revision: str, *, create: bool) -> UpgradeResult:
    if revision != "head" and revision not in {rev.id for rev in schema.history()}:
        raise NotFoundError(f"no schema revision named {revision!r}")
    with open_engine(url, create_dir=create) as engine:
        before = schema.check_upgradable(engine)
        target = schema.head() if revision == "head" else revision
        if before == target:
            action = SchemaAction.CURRENT
        else:
            schema.upgrade(engine, revision)
            action = SchemaAction.CREATED if before is None else SchemaAction.UPGRADED
        return UpgradeResult(redact(url), action, before, schema.current(engine))


def current_revision(url: str) -> CurrentRevision:
    """The database's revision and the one this code needs; works on a database behind."""
    with open_engine(url) as engine:
        return CurrentRevision(redact(url), schema.current(engine), schema.head())


def revision_history() -> list[Revision]:
    """Every schema revision this code knows, oldest first."""
    return schema.history()
