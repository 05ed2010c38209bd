"""What the executor hands every handler of a run (``StepContext.services``): the clouds, the
data path and the server cutover's settings, each None when the run does not need it.

One definition for the engine (which carries it without looking inside) and the handlers
(which read it: handlers/base.py ``target_cloud``, handlers/data.py ``source_cloud`` and
``data_services``). The types are imported for the type checker only: the engine does not
import the clouds or the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import openstack.connection

    from migrator.clouds.connection import CloudHandle
    from migrator.clouds.target import TargetCloud
    from migrator.config_schema import ServersConfig
    from migrator.handlers.data import DataServices


@dataclass(frozen=True)
class Services:
    # The target cloud's adapter (handlers.services_for makes one from a connection).
    target: TargetCloud | None = None
    # The legacy cloud's handle: what the data kinds read their bytes from.
    source: CloudHandle | openstack.connection.Connection | None = None
    # The data path's shared limits, options and progress (handlers/data.py).
    transfer: DataServices | None = None
    # The configuration's ``servers`` section (the cutover's policy and timeouts;
    # handlers/server_phases.py falls back to the defaults without it).
    servers: ServersConfig | None = None
