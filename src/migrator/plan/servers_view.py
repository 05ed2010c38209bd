"""What a plan says about its servers, for people and scripts: one row per server (target
flavor, old -> new addresses, floating IPv4 -> the IPv6 address replacing it, bytes, the
estimated downtime) and the address map (CSV) an operator feeds the DNS cutover."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from migrator.errors import ConfigError

ADDRESS_MAP_COLUMNS = ("tenant", "server", "source_id", "port", "mac", "kind", "old_address",
                       "new_address")


def server_rows(steps: Iterable[Any]) -> list[dict[str, Any]]:
    """One dict per server step (in plan order)."""
    out = []
    for step in steps:
        if step.kind != "server":
            continue
        cut = step.spec.get("cutover") or {}
        out.append({"tenant": step.tenant, "server": step.name, "source_id": step.source_id,
                    "wave": step.wave, "flavor": cut.get("flavor"),
                    "power_state": cut.get("power_state"), "boot": cut.get("boot"),
                    "addresses": list(cut.get("addresses") or []),
                    "bytes": cut.get("bytes"), "copy_seconds": cut.get("copy_seconds"),
                    "estimated_downtime_seconds": cut.get("estimated_downtime_seconds"),
                    "policy": cut.get("policy")})
    return out


def address_rows(rows: Iterable[dict[str, Any]]) -> list[list[str]]:
    """The address map: every old address of every server with the address replacing it."""
    out: list[list[str]] = []
    for row in rows:
        for addr in row["addresses"]:
            base = [str(row["tenant"] or ""), str(row["server"] or ""), str(row["source_id"]),
                    str(addr.get("port")), str(addr.get("mac") or "")]
            out.append([*base, "fixed", str(addr.get("ipv4") or ""), str(addr.get("ipv6"))])
            for floating in addr.get("floating_ipv4") or []:
                out.append([*base, "floating", str(floating), str(addr.get("floating_ipv6"))])
    return out


def address_map_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ADDRESS_MAP_COLUMNS)
    writer.writerows(address_rows(rows))
    return buf.getvalue()


def write_address_map(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write the address map CSV (atomically: a temporary file renamed)."""
    out = Path(path)
    text = address_map_csv(rows)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise ConfigError(f"--address-map {out}: cannot write it: {exc.strerror}") from exc
    return out
