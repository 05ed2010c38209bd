"""The configuration's shape: typed sections with their defaults, and the validation helpers
that turn a wrong key or value into a :class:`ConfigError` naming the file, the key path and
the line. :mod:`migrator.config` loads the file and builds a :class:`Config` from it.

Every key is documented in docs/configuration.md; the sample written by ``migrator init`` is
:data:`migrator.config.SAMPLE`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from migrator.errors import ConfigError
from migrator.retry import Backoff, RetryBudget, RetryPolicy
from migrator.transfer.properties import DEFAULT_RULES, RuleSet
from migrator.values import describe

IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
QUOTA_POLICIES = ("copy", "scale", "fixed")
QUOTA_SERVICES = ("compute", "volume", "network")
PASSWORD_POLICIES = ("random", "fixed", "external")
CONFLICT_DECISIONS = ("adopt", "rename", "fail")
MEMBERS_OUTSIDE = ("refuse", "skip")
IMAGE_FORMAT_POLICIES = ("detect", "trust_legacy")
DEFAULT_ROLE_MAP = {"_member_": "member"}


@dataclass(frozen=True)
class SourceConfig:
    cloud: str = "legacy"
    # tenant name or id -> clouds.yaml entry holding that tenant's own credentials
    tenant_credentials: dict[str, str] = field(default_factory=dict)
    # Discovery's reads on its own kept-alive HTTP connections (False: through the SDK).
    lean_reads: bool = True


@dataclass(frozen=True)
class TargetConfig:
    cloud: str = "target"
    # Keystone domain (name or id) that the legacy tenants of the default domain go to.
    domain: str = "Default"


@dataclass(frozen=True)
class SelectionConfig:
    tenants: list[str] = field(default_factory=list)  # names or ids; empty: all discovered
    exclude: list[str] = field(default_factory=list)  # never migrated (e.g. admin, service)
    waves: list[list[str]] = field(default_factory=list)
    # An image member (a tenant it is shared with) that is not selected: refuse | skip
    members_outside: str = "refuse"
    # Step kinds to plan (empty: all) and kinds left out (with what needs them).
    kinds: list[str] = field(default_factory=list)
    exclude_kinds: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MappingsConfig:
    domains: dict[str, str] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_MAP))
    flavors: dict[str, str] = field(default_factory=dict)
    volume_types: dict[str, str] = field(default_factory=dict)
    external_networks: dict[str, str] = field(default_factory=dict)
    shared_networks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AddressPlanConfig:
    ipv6_prefix: str | None = None
    subnet_pool: str | None = None
    ipv6_mode: str = "slaac"
    keep_ipv4: bool = False
    dns_nameservers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class QuotaConfig:
    policy: str = "copy"
    factor: float = 1.0
    # service -> quota key -> value (policy fixed: the values; copy/scale: overrides)
    fixed: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class UsersConfig:
    password_policy: str = "random"
    password_file: str = "state/passwords.yaml"
    password_env: str | None = None


@dataclass(frozen=True)
class ConflictsConfig:
    default: str = "fail"
    projects: dict[str, str] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    rename_suffix: str = "-migrated"



@dataclass(frozen=True)
class TransferTimeouts:
    request: float = 300.0  # socket timeout of every data-path request (seconds)
    image_active: float = 6 * 3600.0  # legacy volume upload until its temporary image is active
    volume_available: float = 6 * 3600.0  # target volume until available
    poll_interval: float = 2.0  # seconds between status reads while waiting


@dataclass(frozen=True)
class TransferConfig:
    parallel_transfers: int = 4  # image/volume byte copies at a time
    # A copy planned at most this many bytes holds no transfer slot; 0: every copy holds one.
    small_copy_bytes: int = 16 << 20
    metadata_workers: int = 8  # steps at a time (execute --workers)
    bandwidth: int | None = None  # bytes/s across the run; None: unlimited
    allow_force_upload: bool = False  # upload in-use legacy volumes (crash-consistent copy)
    timeouts: TransferTimeouts = field(default_factory=TransferTimeouts)


SERVER_CUTOVERS = ("stop", "snapshot_running")


@dataclass(frozen=True)
class ServersConfig:
    """How servers are cut over (handlers/servers.py)."""

    # stop: the source is stopped before its disks are read (consistent, the copy is inside
    # the downtime); snapshot_running: the disks are read while it runs (crash-consistent,
    # writes after the snapshot are not carried) and it is stopped just before the target boots.
    cutover: str = "stop"
    keep_mac: bool = True  # target ports take the source port's MAC (its SLAAC address)
    stop_timeout: float = 600.0  # source server until SHUTOFF (seconds)
    snapshot_timeout: float = 6 * 3600.0  # createImage until the image is active
    active_timeout: float = 1800.0  # target server until ACTIVE
    # The downtime estimate of the plan: bytes / bandwidth (transfer.bandwidth, else this)
    # plus boot_overhead seconds.
    estimate_bandwidth: int = 100 << 20
    boot_overhead: float = 60.0


@dataclass(frozen=True)
class RetriesConfig:
    """How failures are retried (migrator/retry.py): a step, and one API call of a cloud."""

    step_attempts: int = 3  # tries of a step before it fails for good (execute --max-attempts)
    step_backoff: float = 2.0  # seconds before a step's first retry, doubled each time
    step_backoff_max: float = 300.0
    call_retries: int = 4  # more tries of one API call (429/5xx, dropped connection)
    call_backoff: float = 0.2  # seconds before a call's first retry, doubled each time
    call_backoff_max: float = 5.0
    budget: float = 100.0  # retries per cloud (calls and create phases together)
    budget_refill: float = 0.2  # given back to the budget by each call that succeeds

    def call_policy(self, cloud: str) -> RetryPolicy:
        """The retry policy of one cloud's calls, with a budget of its own."""
        return RetryPolicy(retries=self.call_retries,
                           backoff=Backoff(self.call_backoff, self.call_backoff_max),
                           budget=RetryBudget(self.budget, self.budget_refill, name=cloud))


@dataclass(frozen=True)
class Config:
    path: str | None
    source: SourceConfig = field(default_factory=SourceConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    mappings: MappingsConfig = field(default_factory=MappingsConfig)
    address_plan: AddressPlanConfig = field(default_factory=AddressPlanConfig)
    quotas: QuotaConfig = field(default_factory=QuotaConfig)
    users: UsersConfig = field(default_factory=UsersConfig)
    conflicts: ConflictsConfig = field(default_factory=ConflictsConfig)
    # image_properties as given (the raw mapping) and as parsed rules (image_rules)
    image_properties: dict[str, Any] = field(default_factory=dict)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    retries: RetriesConfig = field(default_factory=RetriesConfig)
    servers: ServersConfig = field(default_factory=ServersConfig)
    image_rules: RuleSet = field(default_factory=lambda: DEFAULT_RULES)
    # An image whose disk_format label contradicts its bytes (read at discovery): detect
    # (the target image gets the format of the bytes) or trust_legacy (the label is kept).
    image_formats: str = "detect"


# -- validation helpers ---------------------------------------------------------------------

Path = tuple[str | int, ...]


class Checker:
    """Validates the loaded YAML of one file; errors name ``file:line: key.path``."""

    def __init__(self, file: str, lines: Mapping[Path, int]) -> None:
        self.file = file
        self.lines = lines

    def fail(self, path: Path, message: str) -> ConfigError:
        where = self.file
        probe = path
        while probe:
            if probe in self.lines:
                where = f"{self.file}:{self.lines[probe]}"
                break
            probe = probe[:-1]
        dotted = dotted_path(path)
        return ConfigError(f"{where}: {dotted}: {message}" if dotted else f"{where}: {message}")

    def mapping(self, value: Any, path: Path, known: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {describe(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"key {key!r} must be a string")
            if known is not None and key not in known:
                raise self.fail((*path, key), f"unknown key (known: {', '.join(known)})")
        return value

    def string(self, value: Any, path: Path, *, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {describe(value)}")
        return value

    def choice(self, value: Any, path: Path, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(path, f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def boolean(self, value: Any, path: Path) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {describe(value)}")
        return value

    def number(self, value: Any, path: Path, *, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(path, f"expected a number >= {minimum:g}, got {describe(value)}")
        return float(value)

    def string_list(self, value: Any, path: Path) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {describe(value)}")
        return [str(self.string(v, (*path, i))) for i, v in enumerate(value)]

    def string_map(self, value: Any, path: Path,
                   check: Callable[[Any, Path], str] | None = None) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, item in self.mapping(value, path).items():
            out[key] = check(item, (*path, key)) if check else str(
                self.string(item, (*path, key)))
        return out

    def ipv6_prefix(self, value: Any, path: Path) -> str | None:
        if value is None:
            return None
        text = self.string(value, path)
        try:
            net = ipaddress.ip_network(str(text), strict=True)
        except ValueError as exc:
            raise self.fail(path, f"not a valid network prefix: {exc}") from None
        if net.version != 6:
            raise self.fail(path, f"expected an IPv6 prefix, got IPv{net.version} {net}")
        if net.prefixlen > 63:
            raise self.fail(path, f"/{net.prefixlen} is too long: /64 subnets are cut from "
                            "it (use /63 or shorter)")
        return str(net)


def dotted_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


