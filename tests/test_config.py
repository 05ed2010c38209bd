"""migrator.yaml: defaults, the sample, and one-line errors naming file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.config import SAMPLE, load_config, parse_config, write_sample
from migrator.errors import ConfigError


def test_the_sample_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    config = parse_config(SAMPLE, "migrator.yaml")
    assert config.source.cloud == "legacy" and config.target.domain == "Default"
    assert config.mappings.roles == {"_member_": "member"}
    assert config.mappings.external_networks == {"public": "public"}
    assert config.address_plan.ipv6_prefix == "2001:db8:100::/48"
    assert config.conflicts.default == "fail"
    docs = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for section, cls in (("source", config.source), ("target", config.target),
                         ("selection", config.selection), ("mappings", config.mappings),
                         ("address_plan", config.address_plan), ("quotas", config.quotas),
                         ("users", config.users), ("conflicts", config.conflicts),
                         ("retries", config.retries)):
        for key in cls.__dataclass_fields__:
            assert f"`{section}.{key}`" in docs, f"{section}.{key} is not documented"


def test_an_empty_file_gives_the_defaults() -> None:
    config = parse_config("", "empty.yaml")
    assert config.source.cloud == "legacy" and config.selection.tenants == []
    assert config.quotas.policy == "copy" and config.users.password_policy == "random"


def test_init_writes_the_sample_once(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "migrator.yaml"
    assert write_sample(path) is True
    assert load_config(path).target.cloud == "target"
    path.write_text("source: {cloud: mine}\n")
    assert write_sample(path) is False
    assert load_config(path).source.cloud == "mine"


@pytest.mark.parametrize(("text", "message"), [
    ("sources: {}\n", "m.yaml:1: sources: unknown key (known: source, target, selection"),
    ("source:\n  cloud: legacy\n  clouds: x\n", "m.yaml:3: source.clouds: unknown key"),
    ("address_plan:\n  ipv6_mode: dhcp\n",
     "m.yaml:2: address_plan.ipv6_mode: expected one of slaac, dhcpv6-stateful, "
     "dhcpv6-stateless, got 'dhcp'"),
    ("address_plan:\n  ipv6_prefix: 10.0.0.0/8\n",
     "m.yaml:2: address_plan.ipv6_prefix: expected an IPv6 prefix, got IPv4 10.0.0.0/8"),
    ("address_plan:\n  ipv6_prefix: 2001:db8::/64\n",
     "m.yaml:2: address_plan.ipv6_prefix: /64 is too long"),
    ("address_plan:\n  ipv6_prefix: 2001:db8::/48\n  subnet_pool: pool\n",
     "m.yaml:3: address_plan.subnet_pool: give either ipv6_prefix or subnet_pool, not both"),
    ("mappings:\n  roles: [member]\n", "m.yaml:2: mappings.roles: expected a mapping, got a list"),
    ("mappings:\n  external_networks: {public: 3}\n",
     "m.yaml:2: mappings.external_networks.public: expected a non-empty string, got int 3"),
    ("quotas: {policy: scale, factor: -1}\n",
     "m.yaml:1: quotas.factor: expected a number >= 0, got int -1"),
    ("quotas: {policy: fixed}\n", "m.yaml:1: quotas.fixed: policy 'fixed' needs the values"),
    ("quotas:\n  fixed:\n    compute: {cores: many}\n",
     "m.yaml:3: quotas.fixed.compute.cores: expected an integer >= -1"),
    ("users: {password_policy: fixed}\n",
     "m.yaml:1: users.password_env: password_policy 'fixed' needs the name"),
    ("conflicts:\n  projects:\n    physics: merge\n",
     "m.yaml:3: conflicts.projects.physics: expected one of adopt, rename, fail, got 'merge'"),
    ("selection:\n  waves:\n  - [physics]\n  - [chemistry, physics]\n",
     "m.yaml:4: selection.waves[1]: tenant 'physics' is already in wave 1"),
    ("selection:\n  tenants: physics\n", "m.yaml:2: selection.tenants: expected a list"),
    ("source: [\n", "m.yaml:2: not valid YAML"),
    ("- a\n", "m.yaml: expected a mapping, got a list"),
])
def test_bad_values_name_the_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "m.yaml")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such configuration file .*migrator init"):
        load_config(tmp_path / "nope.yaml")


def test_transfer_and_image_properties_sections() -> None:
    from migrator.config import parse_bytes

    config = parse_config("transfer: {parallel_transfers: 2, bandwidth: 100MiB, "
                          "timeouts: {poll_interval: 0.5}}\n"
                          "image_properties: {rules: [{drop: {keys: [os_version]}}]}\n",
                          "m.yaml")
    assert (config.transfer.parallel_transfers, config.transfer.bandwidth) == (2, 100 << 20)
    assert config.transfer.small_copy_bytes == 16 << 20  # the default
    assert parse_config("transfer: {small_copy_bytes: 1GiB}", "m.yaml"
                        ).transfer.small_copy_bytes == 1 << 30
    assert parse_config("transfer: {small_copy_bytes: 0}", "m.yaml"
                        ).transfer.small_copy_bytes == 0
    assert config.transfer.timeouts.poll_interval == 0.5
    assert config.transfer.metadata_workers == 8 and not config.transfer.allow_force_upload
    assert len(config.image_rules.rules) == 6
    assert parse_bytes("1.5GB") == 1_500_000_000 and parse_bytes("10MB/s") == 10_000_000
    for text, message in (
            ("transfer: {bandwidth: fast}", "m.yaml:1: transfer.bandwidth: expected a size "
                                           "such as 100MiB or 1GB, got 'fast'"),
            ("transfer: {parallel_transfers: 0}", "m.yaml:1: transfer.parallel_transfers: "
                                                 "expected a whole number >= 1, got 0"),
            ("transfer: {small_copy_bytes: -1}", "m.yaml:1: transfer.small_copy_bytes: "
                                                "expected a positive size, got -1 (bytes; 0: "
                                                "every copy holds a transfer slot)"),
            ("transfer: {small_copy_bytes: tiny}", "m.yaml:1: transfer.small_copy_bytes: "
                                                  "expected a size such as 100MiB or 1GB, "
                                                  "got 'tiny'"),
            ("transfer: {small_copy_bytes: false}", "m.yaml:1: transfer.small_copy_bytes: "
                                                   "expected a size such as 100MiB, got "
                                                   "False"),
            ("image_properties:\n  rules:\n    - set_if_architecture: {architecture: arm, "
             "set: {a: b}}", "m.yaml:3: image_properties.rules[0].set_if_architecture: "
                             "unknown architecture 'arm'")):
        with pytest.raises(ConfigError) as caught:
            parse_config(text, "m.yaml")
        assert str(caught.value).startswith(message), str(caught.value)


def test_retries_section() -> None:
    config = parse_config("retries:\n  step_attempts: 5\n  call_backoff: 0.5\n  budget: 20\n",
                          "m.yaml")
    retries = config.retries
    assert (retries.step_attempts, retries.step_backoff, retries.call_retries) == (5, 2.0, 4)
    policy = retries.call_policy("target")
    assert (policy.retries, policy.backoff.base, policy.backoff.cap) == (4, 0.5, 5.0)
    assert (policy.budget.capacity, policy.budget.refill, policy.budget.name) == (
        20.0, 0.2, "target")
    assert retries.call_policy("target").budget is not policy.budget  # one per cloud
    assert parse_config("", "m.yaml").retries.step_attempts == 3
    for text, message in (
            ("retries: {step_attempts: 0}", "m.yaml:1: retries.step_attempts: expected a "
                                           "whole number >= 1, got 0"),
            ("retries: {call_retries: 1.5}", "m.yaml:1: retries.call_retries: expected a "
                                            "whole number >= 0, got 1.5"),
            ("retries:\n  budget: lots\n", "m.yaml:2: retries.budget: expected a number >= 0"),
            ("retries: {attempts: 3}", "m.yaml:1: retries.attempts: unknown key")):
        with pytest.raises(ConfigError) as caught:
            parse_config(text, "m.yaml")
        assert str(caught.value).startswith(message), str(caught.value)
