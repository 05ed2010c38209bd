"""What Nova's routes share: the microversion range of the profile, the project in the URL,
and quota limits (keypairs are counted against them).

Quotas are stored as ``{"id": "compute:<project_id>", "service": "compute", "project_id",
"limits"}``; keys missing from ``limits`` take Nova's defaults.
"""

from __future__ import annotations

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.http import AuthContext, SimHTTPError, auth_of
from migrator.sim.microversion import MicroversionRange, at_least

PREFIX = "/compute"

QUOTA_DEFAULTS = {
    "instances": 10, "cores": 20, "ram": 51200, "metadata_items": 128,
    "injected_files": 5, "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255, "key_pairs": 100, "server_groups": 10,
    "server_group_members": 10,
    # nova-network's, hidden from 2.36 on.
    "floating_ips": 10, "fixed_ips": -1, "security_groups": 10, "security_group_rules": 20,
}
NOVA_NETWORK_KEYS = ("fixed_ips", "floating_ips", "security_group_rules", "security_groups")
INJECTED_FILE_KEYS = ("injected_files", "injected_file_content_bytes",
                      "injected_file_path_bytes")


def microversion_range(cloud: SimCloud) -> MicroversionRange:
    liberty = cloud.profile.nova_url_has_project
    # Liberty's Nova reads only the legacy header (OpenStack-API-Version came with 2.27).
    return MicroversionRange(service="compute", minimum="2.1",
                             maximum=cloud.profile.nova_max_microversion,
                             legacy_header="X-OpenStack-Nova-API-Version",
                             generic_header=not liberty)


def check_url_project(request: web.Request) -> AuthContext:
    ctx = auth_of(request)
    pid = request.match_info.get("project_id")
    if pid and pid != ctx.project_id:
        raise SimHTTPError(400, f"Malformed request URL: URL's project_id '{pid}' doesn't "
                                f"match Context's project_id '{ctx.project_id}'")
    return ctx


def hidden_quota_keys(request: web.Request) -> tuple[str, ...]:
    """Quota keys a request at its microversion neither sees nor may set."""
    if at_least(request, "2.57"):
        return NOVA_NETWORK_KEYS + INJECTED_FILE_KEYS
    if at_least(request, "2.36"):
        return NOVA_NETWORK_KEYS
    return ()


def quota_limits(cloud: SimCloud, project_id: str) -> dict[str, int]:
    limits = dict(QUOTA_DEFAULTS)
    rec = cloud.state.get("quotas", f"compute:{project_id}")
    if rec is not None:
        limits.update({k: int(v) for k, v in rec.get("limits", {}).items() if k in limits})
    return limits


def policy_error(rule: str) -> SimHTTPError:
    return SimHTTPError(403, f"Policy doesn't allow {rule} to be performed.")
