"""What distinguishes a Liberty-era cloud from a modern (Kolla) one, as data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Delays:
    """Seconds a resource stays in a transitional status (0 in unit tests)."""

    volume_create: float = 0.0
    volume_delete: float = 0.0
    volume_upload: float = 0.0
    # An upload (PUT .../file) stays ``saving`` this long before it answers, as a slow store.
    image_upload: float = 0.0
    # A server stays BUILD this long; a stop or start takes this long (task_state
    # powering-off/-on); a snapshot of an image-backed server uploads for this long.
    server_build: float = 0.0
    server_power: float = 0.0
    server_snapshot: float = 0.0


@dataclass(frozen=True)
class Profile:
    name: str
    # Keystone: v2.0 served beside v3 on Liberty.
    keystone_v2: bool
    keystone_v3_version: str
    # A top-level project's parent_id: null on Liberty; its domain from Mitaka on (projects
    # acting as domains: keystone/resource/core.py create_project).
    keystone_domain_parent: bool
    # Glance: versions listed by GET /image/, newest first; v1 is served only on Liberty.
    glance_versions: tuple[str, ...]
    glance_v1: bool
    glance_multihash: bool
    glance_visibilities: tuple[str, ...]
    # Cinder: the API versions served ("v2" or "v3") and the v3 microversion range.
    cinder_versions: tuple[str, ...]
    cinder_max_microversion: str | None
    # Nova: microversion range; the catalog URL carries the project id on Liberty.
    nova_max_microversion: str
    nova_url_has_project: bool
    # Neutron: Liberty knows only tenant_id and silently ignores unknown filters.
    neutron_project_id: bool
    neutron_tags: bool
    neutron_subnetpools: bool
    delays: Delays = field(default_factory=Delays)
    # Glance: uploads whose bytes do not match disk_format are refused (Glance 29 and later,
    # [image_format] require_image_format_match on by default).
    glance_format_match: bool = False


LIBERTY = Profile(
    name="liberty",
    keystone_v2=True,
    keystone_v3_version="v3.4",
    keystone_domain_parent=False,
    glance_versions=("v2.3", "v2.2", "v2.1", "v2.0", "v1.1", "v1.0"),
    glance_v1=True,
    glance_multihash=False,
    glance_visibilities=("public", "private"),
    cinder_versions=("v1", "v2"),
    cinder_max_microversion=None,
    nova_max_microversion="2.12",
    nova_url_has_project=True,
    neutron_project_id=False,
    neutron_tags=False,
    neutron_subnetpools=False,
)

MODERN = Profile(
    name="modern",
    keystone_v2=False,
    keystone_v3_version="v3.14",
    keystone_domain_parent=True,
    glance_versions=("v2.16", "v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.0"),
    glance_v1=False,
    glance_multihash=True,
    glance_visibilities=("public", "private", "shared", "community"),
    cinder_versions=("v3",),
    cinder_max_microversion="3.70",
    nova_max_microversion="2.96",
    nova_url_has_project=False,
    neutron_project_id=True,
    neutron_tags=True,
    neutron_subnetpools=True,
    glance_format_match=True,
)

PROFILES = {p.name: p for p in (LIBERTY, MODERN)}


def top_level_parent(profile: Profile, domain_id: str) -> str | None:
    """The parent_id of a project made directly in ``domain_id``."""
    return domain_id if profile.keystone_domain_parent else None


def microversion_tuple(value: str) -> tuple[int, int]:
    major, _, minor = value.partition(".")
    return int(major), int(minor or 0)
