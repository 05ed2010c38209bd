"""Step handlers for the tenant kinds (issue 4), registered under the plan's kind names.

    from migrator.handlers import register_handlers, services_for
    register_handlers()                       # the process-wide engine registry
    execute_run(url, run, services=services_for(target_connection))

Handlers reach the target cloud through ``StepContext.services.target`` (a
:class:`~migrator.clouds.target.TargetCloud`; ``services_for`` makes one from a connection or
CloudHandle) and the rest of the run's :class:`~migrator.services.Services` likewise. The spec
each kind reads is a :class:`migrator.spec.Spec` (the planner writes the same type); what each
kind puts in it is described at the top of identity.py, network.py and compute.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrator.engine.handlers import REGISTRY, Handler, HandlerRegistry
from migrator.kinds import KINDS
from migrator.services import Services

if TYPE_CHECKING:
    from migrator.handlers.data import DataServices

_HANDLERS: dict[str, Handler] = {}


def handlers() -> dict[str, Handler]:
    """One shared instance per kind (handlers keep no per-step state)."""
    if not _HANDLERS:
        from migrator.handlers.compute import KeypairHandler
        from migrator.handlers.identity import (
            ProjectHandler,
            QuotaHandler,
            RoleAssignmentHandler,
            UserHandler,
        )
        from migrator.handlers.image import ImageHandler, ImageMemberHandler
        from migrator.handlers.network import (
            NetworkHandler,
            RouterHandler,
            RouterInterfaceHandler,
            SecurityGroupHandler,
            SecurityGroupRuleHandler,
            SubnetHandler,
        )
        from migrator.handlers.servers import ServerHandler
        from migrator.handlers.volume import VolumeHandler

        for handler in (
            ProjectHandler(), QuotaHandler(), UserHandler(), RoleAssignmentHandler(),
            NetworkHandler(), SubnetHandler(), RouterHandler(), RouterInterfaceHandler(),
            SecurityGroupHandler(), SecurityGroupRuleHandler(), KeypairHandler(),
            ImageHandler(), ImageMemberHandler(), VolumeHandler(), ServerHandler(),
        ):
            _HANDLERS[handler.kind] = handler
    return dict(_HANDLERS)


def register_handlers(registry: HandlerRegistry | None = None) -> HandlerRegistry:
    """Register every tenant kind in ``registry`` (default: the engine's); idempotent."""
    target = registry or REGISTRY
    for kind, handler in handlers().items():
        target.register(kind, handler)
    return target


def services_for(target: Any, source: Any = None, transfer: DataServices | None = None
                 ) -> Services:
    """The executor's services: the target adapter (a TargetCloud is made from a connection
    or CloudHandle), optionally the source handle and the data path."""
    from migrator.clouds.target import TargetCloud

    tc = target if isinstance(target, TargetCloud) else TargetCloud(
        target, name=str(getattr(target, "name", None) or "target"))
    return Services(target=tc, source=source, transfer=transfer)


__all__ = ["KINDS", "handlers", "register_handlers", "services_for"]
