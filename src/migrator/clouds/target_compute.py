"""Target Nova keypairs (created for their user by the admin, microversion 2.10) and the
quota sets of the three services, written with only the keys the target accepts."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from migrator.clouds.errors import translate
from migrator.clouds.target_base import TargetBase, TargetCloudError
from migrator.errors import ConfigError

# Keypairs of another user need 2.10 (user_id in the body and in the query).
KEYPAIR_MICROVERSION = "2.10"
# The newest compute microversion whose quota keys this adapter knows.
COMPUTE_QUOTA_MAX_MICROVERSION = (2, 96)
# Refused from 2.36 (nova-network proxies gone) and from 2.57 (file injection gone).
NOVA_NETWORK_QUOTA_KEYS = frozenset(
    {"floating_ips", "fixed_ips", "security_groups", "security_group_rules", "networks"}
)
INJECTED_FILE_QUOTA_KEYS = frozenset(
    {"injected_files", "injected_file_content_bytes", "injected_file_path_bytes"}
)
QUOTA_SERVICES = ("compute", "volume", "network")


@dataclass(frozen=True)
class QuotaResult:
    """What ``set_quotas`` wrote and what it left out (keys the target refuses or lacks)."""

    service: str
    project_id: str
    applied: dict[str, Any]
    dropped: dict[str, str] = field(default_factory=dict)  # key -> reason
    microversion: str | None = None
    # The quota set as the target answered the PUT (get_quotas' shape); None: nothing sent.
    answer: dict[str, Any] | None = None


def fingerprint(public_key: str) -> str:
    """Nova's fingerprint of an OpenSSH public key: md5 of the key blob, colon hex. Keys that
    do not parse fall back to the md5 of the text (still stable for comparing)."""
    parts = public_key.strip().split()
    try:
        blob = base64.b64decode(parts[1], validate=True) if len(parts) >= 2 else b""
    except (binascii.Error, ValueError):
        blob = b""
    digest = hashlib.md5(blob or public_key.strip().encode(), usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


class ComputeMixin(TargetBase):
    # -- microversions ---------------------------------------------------------------------
    def compute_max_microversion(self) -> tuple[int, int]:
        """The compute API's maximum microversion (discovery, memoised); (2, 0) when the
        endpoint announces none (legacy v2.0 API)."""

        def read() -> tuple[int, int]:
            try:
                data = self._proxy("compute").get_endpoint_data()
            except (ksa_exc.EndpointNotFound, sdk_exc.ServiceDisabledException) as exc:
                # no compute service in the catalog: final (clouds/errors.py), no retry
                raise TargetCloudError.from_call_error(
                    translate(exc, self.name, "read the compute API version")) from exc
            version = getattr(data, "max_microversion", None) if data else None
            if not version:
                return (2, 0)
            return (int(version[0]), int(version[1]))

        value: tuple[int, int] = self.cached("compute-max-microversion", read)
        return value

    def compute_quota_microversion(self) -> str:
        major, minor = min(self.compute_max_microversion(), COMPUTE_QUOTA_MAX_MICROVERSION)
        return f"{major}.{minor}"

    # -- keypairs --------------------------------------------------------------------------
    def _keypair_microversion(self) -> str:
        if self.compute_max_microversion() < (2, 10):
            raise ConfigError(
                f"{self.name}: compute API below microversion 2.10 cannot create keypairs "
                "for another user"
            )
        return KEYPAIR_MICROVERSION

    def find_keypair(self, user_id: str, name: str) -> dict[str, Any] | None:
        out = self.request(
            "compute", "GET", f"/os-keypairs/{name}", op="find keypair",
            what=f"{name!r} of user {user_id}", params={"user_id": user_id},
            microversion=self._keypair_microversion(), missing_ok=True,
        )
        return dict(out["keypair"]) if out else None

    def get_keypair(self, user_id: str, name: str) -> dict[str, Any]:
        found = self.find_keypair(user_id, name)
        if found is None:
            raise self.not_found("keypair", f"{name!r} of user {user_id}", self.name)
        return found

    def create_keypair(self, user_id: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Import ``attrs`` (name, public_key, type) for ``user_id`` (the admin acts for
        the user at 2.10)."""
        body = {k: attrs[k] for k in ("name", "public_key", "type") if attrs.get(k)}
        body["user_id"] = user_id
        out = self.request(
            "compute", "POST", "/os-keypairs", op="create keypair",
            what=f"{body.get('name')!r} of user {user_id}", json={"keypair": body},
            microversion=self._keypair_microversion(),
        )
        return dict(out["keypair"])

    def delete_keypair(self, user_id: str, name: str) -> None:
        self.request(
            "compute", "DELETE", f"/os-keypairs/{name}", op="delete keypair",
            what=f"{name!r} of user {user_id}", params={"user_id": user_id},
            microversion=self._keypair_microversion(), missing_ok=True,
        )

    # -- quotas ----------------------------------------------------------------------------
    def get_quotas(self, service: str, project_id: str) -> dict[str, Any]:
        """The quota limits of one service for a project, as the target reports them."""
        if service == "compute":
            body = self.request(
                "compute", "GET", f"/os-quota-sets/{project_id}", op="get compute quotas",
                what=f"of project {project_id}", microversion=self.compute_quota_microversion(),
            )["quota_set"]
        elif service == "volume":
            body = self.request(
                "block_storage", "GET", f"/os-quota-sets/{project_id}",
                op="get volume quotas", what=f"of project {project_id}",
            )["quota_set"]
        elif service == "network":
            body = self.get_network_quotas(project_id)  # type: ignore[attr-defined]
        else:
            raise ConfigError(f"unknown quota service {service!r} (known: "
                              f"{', '.join(QUOTA_SERVICES)})")
        return {k: v for k, v in dict(body).items() if k != "id"}

    def quota_keys(self, service: str, project_id: str) -> frozenset[str]:
        """The keys the target's service knows (read once per adapter: they do not depend on
        the project)."""
        return frozenset(self.cached(f"quota-keys:{service}",
                                     lambda: frozenset(self.get_quotas(service, project_id))))

    def filter_quotas(self, service: str, project_id: str, values: Mapping[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, str], str | None]:
        """(keys to send, keys dropped with the reason, compute microversion)."""
        keep: dict[str, Any] = {}
        dropped: dict[str, str] = {}
        microversion = None
        if service == "compute":
            microversion = self.compute_quota_microversion()
            version = self.compute_max_microversion()
            for key, value in values.items():
                if key in NOVA_NETWORK_QUOTA_KEYS and version >= (2, 36):
                    dropped[key] = f"refused from compute microversion 2.36 ({microversion})"
                elif key in INJECTED_FILE_QUOTA_KEYS and version >= (2, 57):
                    dropped[key] = f"refused from compute microversion 2.57 ({microversion})"
                else:
                    keep[key] = value
        else:
            keep = dict(values)
        known = self.quota_keys(service, project_id)
        for key in list(keep):
            if key not in known:
                dropped[key] = f"unknown to the target's {service} service"
                del keep[key]
            elif keep[key] is None:
                dropped[key] = "no value"
                del keep[key]
        return keep, dropped, microversion

    def set_quotas(self, service: str, project_id: str, values: Mapping[str, Any]
                   ) -> QuotaResult:
        """Write the quota set (idempotent PUT) with only the keys the target accepts."""
        keep, dropped, microversion = self.filter_quotas(service, project_id, values)
        answer: Any = None
        if keep:
            if service == "compute":
                answer = (self.request(
                    "compute", "PUT", f"/os-quota-sets/{project_id}", op="set compute quotas",
                    what=f"of project {project_id}", json={"quota_set": keep},
                    microversion=microversion,
                ) or {}).get("quota_set")
            elif service == "volume":
                answer = (self.request(
                    "block_storage", "PUT", f"/os-quota-sets/{project_id}",
                    op="set volume quotas", what=f"of project {project_id}",
                    json={"quota_set": keep},
                ) or {}).get("quota_set")
            else:
                answer = self.put_network_quotas(project_id, keep)  # type: ignore[attr-defined]
        shown = ({k: v for k, v in dict(answer).items() if k != "id"}
                 if isinstance(answer, Mapping) else None)
        return QuotaResult(service, project_id, keep, dropped, microversion, shown)
