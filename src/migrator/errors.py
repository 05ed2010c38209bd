"""The project's one small exception tree.

Lower layers raise these; only the CLI boundary turns them into ``Error: <message>`` and an
exit code (``--debug`` shows the traceback). Messages are one line and name the file, step or
field at fault. They never carry secrets. An error that stands for several problems found
together (a plan that cannot be made, a plan the target refuses) lists them all in
``problems``, which the CLI prints one per line.
"""

from __future__ import annotations

from collections.abc import Sequence


class MigratorError(Exception):
    """Base of every error the CLI reports as a one-line message."""

    exit_code = 1
    # True when doing the same again cannot succeed until someone changes something (a volume
    # that is attached, a target image in the wrong state): the executor fails such a step at
    # once instead of spending its retries and backoff on it; --resume tries it again.
    final = False
    # True when the failure is not the step's own but its surroundings' (a cloud that cannot
    # be connected to at all): every other step would fail the same way, so the executor
    # stops the run instead of spending their attempts, and --resume continues it later.
    stops_run = False

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems = tuple(problems)

    def __str__(self) -> str:
        return self.message


class ConfigError(MigratorError):
    """A configuration file, a command-line value or a seed file is wrong."""

    exit_code = 2


class DatabaseError(MigratorError):
    """The state database cannot be opened or used."""

    exit_code = 3


class SchemaBehindError(DatabaseError):
    """The state database's schema is older than the code."""


class NotFoundError(MigratorError):
    """A named run, plan, step or resource does not exist."""

    exit_code = 4


class IllegalTransitionError(MigratorError):
    """A trigger that the step's current state does not allow."""

    exit_code = 5


class ConcurrencyError(MigratorError):
    """Another writer changed the row first (version mismatch) or holds the run's lock."""

    exit_code = 6


class StepFailedError(MigratorError):
    """A step handler failed; retried by the executor up to its limit."""


class TargetGoneError(StepFailedError):
    """What a step made on the target is not there (deleted since, or a grant revoked):
    ``verify`` reports it as missing rather than as different."""


class PlanError(MigratorError):
    """A plan file is malformed, tampered with, stale or refers to something unknown."""

    exit_code = 7


class PlanChangedError(PlanError):
    """A plan file's content no longer matches its content hash: edited after planning."""


class StalePlanError(PlanError):
    """The source inventory changed since the plan was made (or is not in this database)."""


class CloudError(MigratorError):
    """A cloud answered with an error or could not be reached."""

    exit_code = 8


class RunStoppedError(CloudError):
    """A run stopped because of ``cause``, an error outside its steps (``stops_run``: a cloud
    that cannot be connected to, met by a cloud call or by the data path)."""

    def __init__(self, message: str, cause: MigratorError) -> None:
        super().__init__(message)
        self.cause = cause
