"""The pieces of the server rule that need no cloud: the EUI-64 address of a MAC (against
the simulator's own Neutron computation), the address map CSV, the servers settings."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from migrator.config import SAMPLE, parse_config
from migrator.errors import ConfigError
from migrator.plan.rules.servers import eui64
from migrator.plan.servers_view import address_map_csv, write_address_map
from migrator.sim.neutron_ipam import eui64 as neutron_eui64


@pytest.mark.parametrize("mac", ["fa:16:3e:00:00:01", "fa:16:3e:ef:77:b2", "00:00:5e:00:53:af",
                                 "02:ff:ff:ff:ff:ff"])
def test_eui64_is_the_address_neutron_gives_the_mac(mac: str) -> None:
    cidr = "2001:db8:100:f955::/64"
    assert eui64(cidr, mac) == str(neutron_eui64(ipaddress.ip_network(cidr), mac))


def test_eui64_flips_the_universal_local_bit() -> None:
    assert eui64("2001:db8::/64", "fa:16:3e:ef:77:b2") == "2001:db8::f816:3eff:feef:77b2"


ROWS = [{"tenant": "physics", "server": "web", "source_id": "s1", "addresses": [
    {"port": 0, "mac": "fa:16:3e:00:00:01", "ipv4": "10.0.0.3",
     "ipv6": "2001:db8::f816:3eff:fe00:1", "floating_ipv4": ["203.0.113.7"],
     "floating_ipv6": "2001:db8::f816:3eff:fe00:1"}]}]


def test_address_map_has_a_row_per_old_address(tmp_path: Path) -> None:
    assert address_map_csv(ROWS).splitlines() == [
        "tenant,server,source_id,port,mac,kind,old_address,new_address",
        "physics,web,s1,0,fa:16:3e:00:00:01,fixed,10.0.0.3,2001:db8::f816:3eff:fe00:1",
        "physics,web,s1,0,fa:16:3e:00:00:01,floating,203.0.113.7,2001:db8::f816:3eff:fe00:1"]
    out = write_address_map(ROWS, tmp_path / "maps" / "a.csv")
    assert out.read_text() == address_map_csv(ROWS)
    assert [p.name for p in out.parent.iterdir()] == ["a.csv"]


def test_servers_settings_are_checked() -> None:
    config = parse_config(SAMPLE)
    assert (config.servers.cutover, config.servers.keep_mac) == ("stop", True)
    text = SAMPLE.replace("  cutover: stop ", "  cutover: live ")
    with pytest.raises(ConfigError, match=r"servers\.cutover: .*'live'"):
        parse_config(text, "migrator.yaml")
    text = SAMPLE.replace("estimate_bandwidth: 100MiB", "estimate_bandwidth: fast")
    with pytest.raises(ConfigError, match=r"servers\.estimate_bandwidth"):
        parse_config(text, "migrator.yaml")
