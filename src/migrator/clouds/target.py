"""The target cloud adapter: what the handlers (and the planner's clash detection) call.

``TargetCloud`` wraps an openstacksdk connection (or a ``CloudHandle`` from
``clouds/connection.py``) to the modern cloud. Per kind it offers the SDK's verb vocabulary on
raw API JSON: ``find_<kind>_by_source(source_id)``, ``find_<kind>_by_name(...)``,
``create_<kind>(source_id, attrs)``, ``get_<kind>(id)``, ``delete_<kind>(id)``, plus
``set_quotas``, router gateway and interfaces, role grants and ``wait_for_*`` (bounded).

Every resource it creates carries its source id (how a re-run or an in-doubt step finds it):

- Keystone projects: tag ``migrator-src-<id>``;
- users: extra attribute ``migrator_source_id`` (plus a description naming the source);
- Neutron networks, subnets, routers, security groups: tag ``migrator-src-<id>`` and the
  description ``migrated from <cloud> <id>`` (unless the resource has its own description);
- security group rules (no tags): description ``migrator-src:<id>``;
- keypairs: adopted by (user, name, same public key fingerprint);
- quotas and role assignments: idempotent PUTs, nothing to mark.

``list_<kind>s`` read every resource of a kind at once (clouds/target_listing.py).

Calls, retries and errors: see ``clouds/target_base.py``.
"""

from __future__ import annotations

from migrator.clouds.target_base import (
    RULE_DESCRIPTION_PREFIX,
    SOURCE_TAG_PREFIX,
    USER_SOURCE_ATTRIBUTE,
    TargetCloudError,
    TargetNotFoundError,
    migrated_source_id,
    source_tag,
)
from migrator.clouds.target_compute import ComputeMixin, QuotaResult, fingerprint
from migrator.clouds.target_identity import IdentityMixin
from migrator.clouds.target_listing import ListedMixin, ListingMixin
from migrator.clouds.target_network import NetworkMixin, same_rule


class TargetCloud(IdentityMixin, NetworkMixin, ComputeMixin, ListingMixin):
    """The modern cloud, as the handlers use it (thread-safe: shared by every worker)."""


class ListedTarget(ListedMixin, TargetCloud):
    """The target whose ``get_<kind>`` answer from one listing per kind (``migrator
    verify``; clouds/target_listing.py)."""


__all__ = [
    "RULE_DESCRIPTION_PREFIX",
    "SOURCE_TAG_PREFIX",
    "USER_SOURCE_ATTRIBUTE",
    "ListedTarget",
    "QuotaResult",
    "TargetCloud",
    "TargetCloudError",
    "TargetNotFoundError",
    "fingerprint",
    "migrated_source_id",
    "same_rule",
    "source_tag",
]
