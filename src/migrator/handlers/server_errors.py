"""The failure of a server's cutover that trying again cannot mend."""

from __future__ import annotations

from migrator.errors import StepFailedError


class ServerFailed(StepFailedError):
    """A cutover failure that trying again cannot mend (a server in ERROR on the target, a
    quota, a MAC taken): the step fails at once; --resume tries again after a fix."""

    final = True
