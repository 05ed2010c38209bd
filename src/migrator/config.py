"""The configuration file (``migrator.yaml``): loading, validation, defaults, the sample.

    config = load_config("migrator.yaml")      # a Config (config_schema.py), or ConfigError
    config.mappings.external_networks["public"]

Every key is optional and has a default; an unknown key, a value of the wrong type or a bad
value is a :class:`ConfigError` naming the file, the line and the key path, e.g.
``migrator.yaml:14: address_plan.ipv6_mode: expected one of slaac, dhcpv6-stateful,
dhcpv6-stateless, got 'dhcp'``. Every key is documented in docs/configuration.md;
``migrator init`` writes :data:`SAMPLE` (commented) when no configuration exists yet.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path as FilePath
from typing import Any

import yaml

from migrator.bounded_yaml import (
    MAX_CONFIG_BYTES,
    YamlProblem,
    check_yaml,
    decode_text,
    read_bytes,
    yaml_problem,
)
from migrator.config_schema import (
    CONFLICT_DECISIONS,
    DEFAULT_ROLE_MAP,
    IMAGE_FORMAT_POLICIES,
    IPV6_MODES,
    MEMBERS_OUTSIDE,
    PASSWORD_POLICIES,
    QUOTA_POLICIES,
    QUOTA_SERVICES,
    SERVER_CUTOVERS,
    AddressPlanConfig,
    Checker,
    Config,
    ConflictsConfig,
    MappingsConfig,
    Path,
    QuotaConfig,
    RetriesConfig,
    SelectionConfig,
    ServersConfig,
    SourceConfig,
    TargetConfig,
    TransferConfig,
    TransferTimeouts,
    UsersConfig,
)
from migrator.errors import ConfigError
from migrator.transfer.properties import RulesError, parse_image_properties

DEFAULT_CONFIG = "migrator.yaml"

SECTIONS = ("source", "target", "selection", "mappings", "address_plan", "quotas", "users",
            "conflicts", "image_properties", "image_formats", "transfer", "retries", "servers")

__all__ = ["DEFAULT_CONFIG", "SAMPLE", "Config", "load_config", "parse_bytes",
           "parse_config", "write_sample"]


def load_config(path: str | FilePath) -> Config:
    """Read and validate the configuration file at ``path``."""
    file = FilePath(path)
    try:
        text = decode_text(read_bytes(file, MAX_CONFIG_BYTES))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such configuration file (create one with "
                          "'migrator init')") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the configuration: {exc.strerror}") from exc
    except YamlProblem as exc:
        raise ConfigError(exc.at(file)) from None
    return parse_config(text, str(file))


def parse_config(text: str, file: str = "<config>") -> Config:
    """Validate configuration text (``file`` names it in errors). Aliases are allowed within
    a budget, nesting within a depth (bounded_yaml.check_yaml)."""
    try:
        check_yaml(text)
        data = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except YamlProblem as exc:
        raise ConfigError(exc.at(file)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(exc, text).at(file)) from None
    check = Checker(file, lines)
    top = check.mapping(data, (), dict.fromkeys(SECTIONS))
    return Config(
        path=file,
        source=_source(check, top.get("source")),
        target=_target(check, top.get("target")),
        selection=_selection(check, top.get("selection")),
        mappings=_mappings(check, top.get("mappings")),
        address_plan=_address_plan(check, top.get("address_plan")),
        quotas=_quotas(check, top.get("quotas")),
        users=_users(check, top.get("users")),
        conflicts=_conflicts(check, top.get("conflicts")),
        image_properties=check.mapping(top.get("image_properties"), ("image_properties",)),
        transfer=_transfer(check, top.get("transfer")),
        retries=_retries(check, top.get("retries")),
        servers=_servers(check, top.get("servers")),
        image_rules=_image_rules(check, top.get("image_properties")),
        image_formats=check.choice(top.get("image_formats", "detect"), ("image_formats",),
                                   IMAGE_FORMAT_POLICIES),
    )


def _image_rules(check: Checker, raw: Any) -> Any:
    try:
        return parse_image_properties(raw, "image_properties")
    except RulesError as exc:
        raise check.fail(exc.path, exc.problem) from None


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 1 << 10, "m": 10**6, "mb": 10**6,
          "mib": 1 << 20, "g": 10**9, "gb": 10**9, "gib": 1 << 30, "t": 10**12, "tb": 10**12,
          "tib": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*(?:/s)?\s*$")


def parse_bytes(value: Any) -> int:
    """A byte count (or rate) as an integer: ``1048576``, ``"100MiB"``, ``"1.5GB"``,
    ``"10MB/s"`` (binary units KiB/MiB/GiB/TiB, decimal kB/MB/GB/TB). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 100MiB, got {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"expected a positive size, got {value!r}")
        return int(value)
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"expected a size such as 100MiB or 1GB, got {value!r}")
    out = int(float(match.group(1)) * _UNITS[unit])
    if out <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return out


def _transfer(check: Checker, raw: Any) -> TransferConfig:
    p: Path = ("transfer",)
    data = check.mapping(raw, p, _fields(TransferConfig))
    default = TransferConfig()

    def count(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise check.fail((*p, key), f"expected a whole number >= 1, got {value!r}")
        return value

    bandwidth = data.get("bandwidth")
    if bandwidth is not None:
        try:
            bandwidth = parse_bytes(bandwidth)
        except ValueError as exc:
            raise check.fail((*p, "bandwidth"), f"{exc} (bytes per second; null: "
                             "unlimited)") from None
    small = data.get("small_copy_bytes", default.small_copy_bytes)
    # 0 (the exemption off) is the one size parse_bytes refuses
    if isinstance(small, bool) or small != 0:
        try:
            small = parse_bytes(small)
        except ValueError as exc:
            raise check.fail((*p, "small_copy_bytes"), f"{exc} (bytes; 0: every copy holds "
                             "a transfer slot)") from None
    tp: Path = (*p, "timeouts")
    times = check.mapping(data.get("timeouts"), tp, _fields(TransferTimeouts))
    tdefault = TransferTimeouts()
    timeouts = TransferTimeouts(**{
        key: check.number(times.get(key, getattr(tdefault, key)), (*tp, key), minimum=0.001)
        for key in _fields(TransferTimeouts)})
    return TransferConfig(
        parallel_transfers=count("parallel_transfers",
                                 data.get("parallel_transfers", default.parallel_transfers)),
        metadata_workers=count("metadata_workers",
                               data.get("metadata_workers", default.metadata_workers)),
        small_copy_bytes=int(small),
        bandwidth=bandwidth,
        allow_force_upload=check.boolean(data.get("allow_force_upload", False),
                                         (*p, "allow_force_upload")),
        timeouts=timeouts,
    )


def _servers(check: Checker, raw: Any) -> ServersConfig:
    p: Path = ("servers",)
    data = check.mapping(raw, p, _fields(ServersConfig))
    default = ServersConfig()
    bandwidth = data.get("estimate_bandwidth", default.estimate_bandwidth)
    try:
        bandwidth = parse_bytes(bandwidth)
    except ValueError as exc:
        raise check.fail((*p, "estimate_bandwidth"), f"{exc} (bytes per second)") from None

    def seconds(key: str) -> float:
        return check.number(data.get(key, getattr(default, key)), (*p, key), minimum=0.001)

    return ServersConfig(
        cutover=check.choice(data.get("cutover", default.cutover), (*p, "cutover"),
                             SERVER_CUTOVERS),
        keep_mac=check.boolean(data.get("keep_mac", default.keep_mac), (*p, "keep_mac")),
        stop_timeout=seconds("stop_timeout"), snapshot_timeout=seconds("snapshot_timeout"),
        active_timeout=seconds("active_timeout"), estimate_bandwidth=bandwidth,
        boot_overhead=check.number(data.get("boot_overhead", default.boot_overhead),
                                   (*p, "boot_overhead")))


def _retries(check: Checker, raw: Any) -> RetriesConfig:
    p: Path = ("retries",)
    data = check.mapping(raw, p, _fields(RetriesConfig))
    default = RetriesConfig()

    def whole(key: str, minimum: int) -> int:
        value = data.get(key, getattr(default, key))
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise check.fail((*p, key), f"expected a whole number >= {minimum}, got {value!r}")
        return value

    def number(key: str, minimum: float = 0.0) -> float:
        return check.number(data.get(key, getattr(default, key)), (*p, key), minimum=minimum)

    return RetriesConfig(
        step_attempts=whole("step_attempts", 1), step_backoff=number("step_backoff"),
        step_backoff_max=number("step_backoff_max"), call_retries=whole("call_retries", 0),
        call_backoff=number("call_backoff"), call_backoff_max=number("call_backoff_max"),
        budget=number("budget"), budget_refill=number("budget_refill"))


def _key_lines(node: Any, path: Path = ()) -> dict[Path, int]:
    """1-based line of every mapping key and list entry, by key path."""
    out: dict[Path, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            out[sub] = key.start_mark.line + 1
            out.update(_key_lines(value, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            sub = (*path, i)
            out[sub] = value.start_mark.line + 1
            out.update(_key_lines(value, sub))
    return out


def _fields(cls: type) -> dict[str, None]:
    return dict.fromkeys(cls.__dataclass_fields__)  # type: ignore[attr-defined]


def _source(check: Checker, raw: Any) -> SourceConfig:
    p: Path = ("source",)
    data = check.mapping(raw, p, _fields(SourceConfig))
    default = SourceConfig()
    return SourceConfig(
        cloud=str(check.string(data.get("cloud", default.cloud), (*p, "cloud"))),
        tenant_credentials=check.string_map(data.get("tenant_credentials"),
                                            (*p, "tenant_credentials")),
        lean_reads=check.boolean(data.get("lean_reads", default.lean_reads),
                                 (*p, "lean_reads")),
    )


def _target(check: Checker, raw: Any) -> TargetConfig:
    p: Path = ("target",)
    data = check.mapping(raw, p, _fields(TargetConfig))
    default = TargetConfig()
    return TargetConfig(
        cloud=str(check.string(data.get("cloud", default.cloud), (*p, "cloud"))),
        domain=str(check.string(data.get("domain", default.domain), (*p, "domain"))),
    )


def _selection(check: Checker, raw: Any) -> SelectionConfig:
    p: Path = ("selection",)
    data = check.mapping(raw, p, _fields(SelectionConfig))
    waves_raw = data.get("waves")
    waves: list[list[str]] = []
    if waves_raw is not None:
        if not isinstance(waves_raw, list):
            raise check.fail((*p, "waves"), "expected a list of tenant lists")
        seen: dict[str, int] = {}
        for i, wave in enumerate(waves_raw):
            names = check.string_list(wave, (*p, "waves", i))
            if not names:
                raise check.fail((*p, "waves", i), "a wave needs at least one tenant")
            for name in names:
                if name in seen:
                    raise check.fail((*p, "waves", i), f"tenant {name!r} is already in wave "
                                     f"{seen[name] + 1}")
                seen[name] = i
            waves.append(names)
    return SelectionConfig(
        tenants=check.string_list(data.get("tenants"), (*p, "tenants")),
        exclude=check.string_list(data.get("exclude"), (*p, "exclude")),
        waves=waves,
        members_outside=check.choice(data.get("members_outside", "refuse"),
                                     (*p, "members_outside"), MEMBERS_OUTSIDE),
        kinds=_kinds(check, data.get("kinds"), (*p, "kinds")),
        exclude_kinds=_kinds(check, data.get("exclude_kinds"), (*p, "exclude_kinds")),
    )


def _kinds(check: Checker, raw: Any, path: Path) -> list[str]:
    names = check.string_list(raw, path)
    if not names:
        return names
    # Imported here: commands that only read the configuration's help stay light.
    from migrator.plan.model import KINDS

    for i, name in enumerate(names):
        if name not in KINDS:
            raise check.fail((*path, i), f"unknown kind {name!r} (known: {', '.join(KINDS)})")
    return names


def _mappings(check: Checker, raw: Any) -> MappingsConfig:
    p: Path = ("mappings",)
    data = check.mapping(raw, p, _fields(MappingsConfig))
    maps = {name: check.string_map(data.get(name), (*p, name)) for name in _fields(
        MappingsConfig)}
    maps["roles"] = {**DEFAULT_ROLE_MAP, **maps["roles"]}
    return MappingsConfig(**maps)


def _address_plan(check: Checker, raw: Any) -> AddressPlanConfig:
    p: Path = ("address_plan",)
    data = check.mapping(raw, p, _fields(AddressPlanConfig))
    prefix = check.ipv6_prefix(data.get("ipv6_prefix"), (*p, "ipv6_prefix"))
    pool = check.string(data.get("subnet_pool"), (*p, "subnet_pool"), optional=True)
    if prefix and pool:
        raise check.fail((*p, "subnet_pool"), "give either ipv6_prefix or subnet_pool, not both")
    dns = check.string_list(data.get("dns_nameservers"), (*p, "dns_nameservers"))
    for i, server in enumerate(dns):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise check.fail((*p, "dns_nameservers", i),
                             f"not an IP address: {server!r}") from None
    return AddressPlanConfig(
        ipv6_prefix=prefix,
        subnet_pool=pool,
        ipv6_mode=check.choice(data.get("ipv6_mode", "slaac"), (*p, "ipv6_mode"), IPV6_MODES),
        keep_ipv4=check.boolean(data.get("keep_ipv4", False), (*p, "keep_ipv4")),
        dns_nameservers=dns,
    )


def _quotas(check: Checker, raw: Any) -> QuotaConfig:
    p: Path = ("quotas",)
    data = check.mapping(raw, p, _fields(QuotaConfig))
    policy = check.choice(data.get("policy", "copy"), (*p, "policy"), QUOTA_POLICIES)
    factor = check.number(data.get("factor", 1.0), (*p, "factor"))
    fixed: dict[str, dict[str, int]] = {}
    services = check.mapping(data.get("fixed"), (*p, "fixed"), dict.fromkeys(QUOTA_SERVICES))
    for service, values in services.items():
        sp = (*p, "fixed", service)
        fixed[service] = {}
        for key, value in check.mapping(values, sp).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise check.fail((*sp, key), f"expected an integer >= -1 (-1: unlimited), got "
                                 f"{value!r}")
            fixed[service][key] = value
    if policy == "fixed" and not fixed:
        raise check.fail((*p, "fixed"), "policy 'fixed' needs the values (fixed: {compute: "
                         "{...}, volume: {...}, network: {...}})")
    return QuotaConfig(policy=policy, factor=factor, fixed=fixed)


def _users(check: Checker, raw: Any) -> UsersConfig:
    p: Path = ("users",)
    data = check.mapping(raw, p, _fields(UsersConfig))
    default = UsersConfig()
    policy = check.choice(data.get("password_policy", default.password_policy),
                          (*p, "password_policy"), PASSWORD_POLICIES)
    env = check.string(data.get("password_env"), (*p, "password_env"), optional=True)
    if policy == "fixed" and not env:
        raise check.fail((*p, "password_env"), "password_policy 'fixed' needs the name of the "
                         "environment variable holding the password")
    return UsersConfig(
        password_policy=policy,
        password_file=str(check.string(data.get("password_file", default.password_file),
                                       (*p, "password_file"))),
        password_env=env,
    )


def _conflicts(check: Checker, raw: Any) -> ConflictsConfig:
    p: Path = ("conflicts",)
    data = check.mapping(raw, p, _fields(ConflictsConfig))

    def decision(value: Any, path: Path) -> str:
        return check.choice(value, path, CONFLICT_DECISIONS)

    suffix = str(check.string(data.get("rename_suffix", "-migrated"), (*p, "rename_suffix")))
    return ConflictsConfig(
        default=decision(data.get("default", "fail"), (*p, "default")),
        projects=check.string_map(data.get("projects"), (*p, "projects"), decision),
        networks=check.string_map(data.get("networks"), (*p, "networks"), decision),
        users=check.string_map(data.get("users"), (*p, "users"), decision),
        rename_suffix=suffix,
    )


SAMPLE = """\
# migrator configuration (every key: docs/configuration.md). All keys are optional.

source:
  cloud: legacy                    # clouds.yaml entry of the legacy (Liberty) cloud
  # Tenants the admin credentials cannot read: tenant name (or id) -> clouds.yaml entry
  # holding that tenant's own credentials.
  tenant_credentials: {}
  #   chemistry: legacy-chemistry-user0
  lean_reads: true                 # discovery's own HTTP reads; false: through openstacksdk

target:
  cloud: target                    # clouds.yaml entry of the modern (Kolla) cloud
  domain: Default                  # Keystone domain (name or id) for the legacy v2 tenants

selection:
  tenants: []                      # names or ids; empty: every discovered tenant
  exclude: [admin, service]        # never migrated
  waves: []                        # e.g. [[physics], [chemistry, biology]]
  members_outside: refuse          # an image shared with a tenant not selected: refuse | skip
  kinds: []                        # step kinds to plan, e.g. [project, user, image, volume]
                                   # (with what they need); empty: every kind the target has
                                   # the services for
  exclude_kinds: []                # kinds left out (and the kinds that need them)

mappings:
  domains: {}                      # legacy domain name -> target domain name
  projects: {}                     # renames: legacy tenant name -> target project name
  roles: {_member_: member}        # legacy role name -> target role name (others: same name)
  flavors: {}                      # legacy flavor name -> target flavor name
  volume_types: {}                 # legacy volume type -> target volume type
  external_networks:               # legacy external network -> existing target network
    public: public
  shared_networks:                 # legacy shared network -> existing target network
    shared-net: shared-net

address_plan:
  ipv6_prefix: "2001:db8:100::/48" # each legacy IPv4 subnet gets a /64 cut from this prefix
  subnet_pool: null                # or: name of a target subnet pool to take /64s from
  ipv6_mode: slaac                 # slaac | dhcpv6-stateful | dhcpv6-stateless
  keep_ipv4: false                 # also recreate the private IPv4 subnet beside the IPv6 one
  dns_nameservers: []              # IPv6 DNS servers for the new subnets (empty: none)

quotas:
  policy: copy                     # copy | scale (by factor) | fixed (the values below)
  factor: 1.0
  fixed: {}                        # service -> key -> value, e.g. {compute: {instances: 10}}

users:
  password_policy: random          # random | fixed (password_env) | external (no password)
  password_file: state/passwords.yaml   # where random passwords are written (mode 0600)
  password_env: null               # fixed: the environment variable holding the password

conflicts:                         # a project or network already on the target, not ours:
  default: fail                    # adopt | rename | fail
  projects: {}                     # per name, e.g. {physics: adopt}
  networks: {}
  users: {}
  rename_suffix: "-migrated"

image_properties:                  # image (and volume image metadata) property rules
  defaults: true                   # the default rules (docs/image-properties.md): AArch64
                                   # gets hw_firmware_type=uefi, hw_machine_type=virt; the
                                   # legacy UEFI hack keys are dropped; architecture kept
  rules: []                        # more rules, applied after the defaults

# An image whose disk_format label contradicts its bytes (read at discovery): detect (the
# target image gets the format of its bytes) | trust_legacy (the label is kept)
image_formats: detect

transfer:
  parallel_transfers: 4            # image and volume byte copies at a time
  small_copy_bytes: 16MiB          # a copy planned at most this big takes no slot (0: off)
  metadata_workers: 8              # steps at a time (execute --workers overrides)
  bandwidth: null                  # cap across the run in bytes/s, e.g. 100MiB (null: none)
  allow_force_upload: false        # copy in-use (attached) legacy volumes (crash-consistent)
  timeouts:
    request: 300                   # socket timeout of every data-path request (s)
    image_active: 21600            # legacy volume upload until its image is active (s)
    volume_available: 21600        # target volume until available (s)
    poll_interval: 2               # between status reads while waiting (s)

servers:                           # cutover of servers (instances)
  cutover: stop                    # stop (disks read once the source is stopped) |
                                   # snapshot_running (read while it runs: crash-consistent,
                                   # stopped just before the target boots)
  keep_mac: true                   # target ports keep the source MAC (SLAAC address known)
  stop_timeout: 600                # source server until SHUTOFF (s)
  snapshot_timeout: 21600          # createImage until its image is active (s)
  active_timeout: 1800             # target server until ACTIVE (s)
  estimate_bandwidth: 100MiB       # plan's downtime estimate when transfer.bandwidth is null
  boot_overhead: 60                # plan's estimate: seconds added to the copy time

retries:                           # transient faults (5xx, dropped connections, expired tokens)
  step_attempts: 3                 # tries of a step before it fails (execute --max-attempts)
  step_backoff: 2                  # seconds before a step's first retry, doubled each time
  step_backoff_max: 300
  call_retries: 4                  # more tries of one API call (idempotent, or a create that
                                   # looks up by source id first)
  call_backoff: 0.2                # seconds before a call's first retry, doubled each time
  call_backoff_max: 5
  budget: 100                      # retries per cloud; each successful call gives back
  budget_refill: 0.2               # this much: a cloud that is down is not hammered
"""


def write_sample(path: str | FilePath) -> bool:
    """Write :data:`SAMPLE` to ``path`` unless a file is already there; True if written."""
    file = FilePath(path)
    if file.exists():
        return False
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with file.open("x") as out:
            out.write(SAMPLE)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigError(f"{file}: cannot write the sample configuration: {exc.strerror}"
                          ) from exc
    return True
