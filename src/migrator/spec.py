"""The step spec: what the planner writes for a step and its handler reads.

One definition for both sides (plan/context.py writes it, handlers/ read it; mypy checks the
keys on both). It travels as plain JSON (plan file, ``steps.spec`` in the state database), so
these are TypedDicts: at run time a spec is the dict it always was, and the plan's content
hash does not change.

- ``attrs``: the translated target representation (the create call's body);
- ``refs``: attribute (dotted for nested) -> the step key ``"<kind>:<source id>"`` whose
  target id fills it at run time (through the id map); a list of keys for a list attribute;
- ``lookup``: what the handler needs to find, adopt or check the resource (:class:`Lookup`);
- ``source``: the legacy resource it comes from;
- ``properties``: image properties before translation and the changes the rules made (image
  and volume steps that have any), shown by ``plan`` and kept for the audit;
- ``undo``: a rollback run's step (handlers/undo.py, written by operations/rollback.py): what
  it removes (:class:`UndoSpec`); such a step has no other part;
- ``cutover``: a server step's planned cutover (flavor, addresses, bytes, estimated
  downtime), shown by ``plan``.

What each kind puts in ``attrs`` is described at the top of handlers/identity.py,
handlers/network.py, handlers/compute.py, handlers/image.py, handlers/volume.py and
handlers/servers.py.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class Source(TypedDict):
    cloud: str
    id: str
    name: str | None


class Lookup(TypedDict, total=False):
    """Every key a kind's lookup may hold (none is required: a kind uses a few)."""

    # project, network, user: an existing target resource the configuration adopts
    adopt_id: str
    # quota: the service whose quota it sets (else the source id's "<service>:" prefix)
    service: str
    # user: where its password comes from (handlers/passwords.py)
    password_policy: str
    password_file: str
    password_env: str | None
    # role_assignment: the target role, by id (resolved at plan time) or by name
    role_id: str
    role_name: str
    # subnet: the target subnet pool it is allocated from, by id or by name
    subnetpool_id: str
    subnetpool: str
    # router: the mapped external network of its gateway, by id or by name
    external_network_id: str
    external_network: str
    # router_interface on a mapped network: the target network and subnet, by name
    network: str
    subnet: str
    # image: what the copied bytes are checked against (legacy size and md5), the format
    # the bytes showed at discovery and the legacy disk_format label
    size: int | None
    checksum: str | None
    content_format: str | None
    legacy_disk_format: str | None
    # volume: the legacy volume's type and status (server: the source server's status)
    source_volume_type: str | None
    source_status: str | None
    # server (plan/rules/servers.py writes them, handlers/server_phases.py reads them): how
    # it boots ("image" or "volume"), the mapped flavor (its target id when the target was
    # read) and the legacy flavor's name, how its owner's key reaches the boot, the boot
    # image's format and translated properties, each port's target, each attached volume's
    # translated attributes in attach order (``size`` above: the bytes to copy), the
    # cutover policy (``servers.cutover``)
    boot: str
    flavor_id: str | None
    source_flavor: str | None
    owner: dict[str, Any]
    image: dict[str, Any]
    ports: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    policy: str


class PropertyChanges(TypedDict):
    before: dict[str, Any]
    changes: list[str]


class UndoSpec(TypedDict, total=False):
    """What an ``undo_<kind>`` step removes, decided when the rollback was planned."""

    # the run undone and its step
    run: str
    run_id: int
    step_key: str
    step_id: int | None
    kind: str
    # the target resource (a composite "<a>:<b>" for keypairs, grants, members, quotas)
    target_id: str | None
    source_id: str
    # delete, revoke, remove_interface, remove_member, reset_quotas, temporaries
    action: str
    why: str
    # keypair: the fingerprint of the key the run imported
    fingerprint: str
    # the undone step's checkpoint, for the source restorer (kinds that have one)
    original_checkpoint: dict[str, Any]
    # whether a source restorer runs (handlers/undo.py register_source_restorer)
    restore_source: bool
    # server: the target project it was booted in, the source ids of its ports and of the
    # volumes its cutover moved (what it made carries one of them)
    project_id: str | None
    source_ports: list[str]
    source_volumes: list[str]


class ServerCutover(TypedDict):
    """What a server's cutover is planned to be, for the operator (``plan`` shows it,
    plan/servers_view.py); no handler reads it."""

    flavor: str  # "<legacy> -> <target>"
    power_state: str
    boot: str
    addresses: list[dict[str, Any]]
    bytes: int
    copy_seconds: float
    estimated_downtime_seconds: float
    policy: str


class Spec(TypedDict, total=False):
    """A step's spec. The planner writes every part but ``properties``; handlers read each
    part as possibly absent (a step built by a program may have fewer)."""

    attrs: dict[str, Any]
    refs: dict[str, str | list[str]]
    lookup: Lookup
    source: Source
    properties: PropertyChanges
    undo: UndoSpec
    cutover: ServerCutover  # server steps


# The parts a handler reads as mappings (handlers/base.py ``spec_part``).
SpecPart = Literal["attrs", "refs", "lookup", "source"]


GIB = 1 << 30


def planned_bytes(kind: str, spec: Spec) -> int | None:
    """The bytes the plan says a step of ``kind`` copies: an image its legacy size, a volume
    its size in GiB, a server what its cutover copies (boot image and volumes, as
    discovered); None for every other kind and when the plan does not know (a server's 0 is
    "not known", not "nothing")."""
    lookup = spec.get("lookup") or {}
    if kind == "image":
        size = lookup.get("size")
    elif kind == "volume":
        gib = (spec.get("attrs") or {}).get("size")
        size = int(gib) * GIB if isinstance(gib, int) and not isinstance(gib, bool) else None
    elif kind == "server":
        size = lookup.get("size") or None
    else:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    return size
