"""Step handlers for the tenant kinds (issue 4), registered under the plan's kind names.

    from migrator.handlers import register_handlers, services_for
    register_handlers()                       # the process-wide engine registry
    execute_run(url, run, services=services_for(target_connection))

Handlers reach the target cloud through ``StepContext.services["target"]`` (a
:class:`~migrator.clouds.target.TargetCloud`, or a connection/CloudHandle it wraps). The spec
each kind expects is documented in handlers/base.py and at the top of identity.py, network.py
and compute.py.
"""

from __future__ import annotations

from typing import Any

from migrator.engine.handlers import REGISTRY, Handler, HandlerRegistry

KINDS = (
    "project", "quota", "user", "role_assignment",
    "network", "subnet", "router", "router_interface", "security_group",
    "security_group_rule", "keypair", "image", "image_member", "volume", "server",
)

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


def services_for(target: Any, source: Any = None, **extra: Any) -> dict[str, Any]:
    """The executor's ``services`` mapping: the target adapter (a TargetCloud is made from a
    connection or CloudHandle) and optionally the source handle."""
    from migrator.clouds.target import TargetCloud

    out: dict[str, Any] = dict(extra)
    out["target"] = target if isinstance(target, TargetCloud) else TargetCloud(
        target, name=str(getattr(target, "name", None) or "target"))
    if source is not None:
        out["source"] = source
    return out


__all__ = ["KINDS", "handlers", "register_handlers", "services_for"]
