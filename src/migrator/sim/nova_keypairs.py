"""Nova keypairs: they belong to users, not projects.

Internal form (the seed loader writes the same): ``{"id": "<user_id>:<name>", name, user_id,
public_key, fingerprint, type, created_at}``. From 2.10 an admin names another user with
``user_id`` (query for list/show/delete, body for create); below 2.10 the parameter is ignored
as Nova ignores unknown query parameters. ``type`` appears from 2.2; from 2.92 Nova no longer
generates keys, so ``public_key`` is required.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import struct
import zlib
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from migrator.sim.cloud import SimCloud
from migrator.sim.http import AuthContext, SimHTTPError, json_response, next_href, page, read_json
from migrator.sim.microversion import at_least
from migrator.sim.nova_common import check_url_project, policy_error, quota_limits
from migrator.sim.state import Record, now_iso_micro

NAME_RE = re.compile(r"^[A-Za-z0-9 _.@-]+$")


def ssh_fingerprint(public_key: str) -> str:
    """md5 of the key blob in colon hex, as Nova computes it; 400 when it is not a key."""
    parts = public_key.strip().split()
    bad = SimHTTPError(400, "Keypair data is invalid: failed to generate fingerprint")
    if len(parts) < 2:
        raise bad
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    # An OpenSSH key blob starts with its own length-prefixed type name.
    if len(blob) < 4:
        raise bad
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length].decode("ascii", "replace") != parts[0]:
        raise bad
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def x509_fingerprint(pem: str) -> str:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise SimHTTPError(400, "Keypair data is invalid: failed to generate X509 fingerprint. "
                                "Error message: unable to load certificate") from exc
    # Nova's X509 fingerprint: SHA-1 of the certificate, in colon hex.
    digest = cert.fingerprint(hashes.SHA1()).hex()
    return ":".join(digest[i : i + 2] for i in range(0, 40, 2))


def generate_ssh_key() -> tuple[str, str]:
    """A real RSA key pair: (OpenSSH public key, PEM private key), as Nova generated them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return f"{public} Generated-by-Nova", private


class KeypairAPI:
    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state

    def _target_user(self, request: web.Request, ctx: AuthContext, wanted: Any, rule: str
                     ) -> str:
        """The user acted on: another one only from 2.10 and only for an admin."""
        if wanted and at_least(request, "2.10"):
            if str(wanted) != ctx.user_id and not ctx.is_admin:
                raise policy_error(f"os_compute_api:os-keypairs:{rule}")
            return str(wanted)
        return ctx.user_id

    def _render(self, request: web.Request, kp: Record, *, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"name": kp["name"], "public_key": kp["public_key"],
                               "fingerprint": kp["fingerprint"]}
        if full:
            out.update(user_id=kp["user_id"], created_at=kp.get("created_at"), deleted=False,
                       deleted_at=None, updated_at=None,
                       id=zlib.crc32(kp["id"].encode()) & 0x7FFFFFFF)
        if at_least(request, "2.2"):
            out["type"] = kp.get("type", "ssh")
        return out

    def _get(self, user_id: str, name: str) -> Record:
        kp = self.state.get("keypairs", f"{user_id}:{name}")
        if kp is None:
            raise SimHTTPError(404, f"Keypair {name} not found for user {user_id}")
        return kp

    async def list_keypairs(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        user_id = self._target_user(request, ctx, request.query.get("user_id"), "index")
        items = sorted(self.state.where("keypairs", "user_id", user_id),
                       key=lambda k: k["name"])
        marker: str | None = None
        if at_least(request, "2.35"):
            items, marker = page(items, request, default_limit=1000, key="name")
        body: dict[str, Any] = {"keypairs": [{"keypair": self._render(request, k, full=False)}
                                             for k in items]}
        if marker is not None:
            body["keypairs_links"] = [{"rel": "next", "href": next_href(request, marker)}]
        return json_response(body)

    async def show(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        user_id = self._target_user(request, ctx, request.query.get("user_id"), "show")
        kp = self._get(user_id, request.match_info["name"])
        return json_response({"keypair": self._render(request, kp, full=True)})

    async def delete(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        user_id = self._target_user(request, ctx, request.query.get("user_id"), "delete")
        kp = self._get(user_id, request.match_info["name"])
        self.state.delete("keypairs", kp["id"])
        return web.Response(status=204 if at_least(request, "2.2") else 202)

    def _validate_body(self, request: web.Request, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise SimHTTPError(400, "Invalid input for field/attribute keypair.")
        allowed = {"name", "public_key"}
        if at_least(request, "2.2"):
            allowed.add("type")
        if at_least(request, "2.10"):
            allowed.add("user_id")
        extra = sorted(set(params) - allowed)
        if extra:
            raise SimHTTPError(400, f"Invalid input for field/attribute keypair. Value: "
                                    f"{params}. Additional properties are not allowed "
                                    f"('{extra[0]}' was unexpected)")
        if "name" not in params:
            raise SimHTTPError(400, "Invalid input for field/attribute keypair. Value: "
                                    f"{params}. 'name' is a required property")
        if at_least(request, "2.92") and "public_key" not in params:
            raise SimHTTPError(400, "Invalid input for field/attribute keypair. Value: "
                                    f"{params}. 'public_key' is a required property")
        name = params["name"]
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 255:
            raise SimHTTPError(400, "Keypair data is invalid: Keypair name must be string and "
                                    "between 1 and 255 characters long")
        if not NAME_RE.match(name.strip()):
            raise SimHTTPError(400, "Keypair data is invalid: Keypair name contains unsafe "
                                    "characters")
        key_type = params.get("type", "ssh")
        if key_type not in ("ssh", "x509"):
            raise SimHTTPError(400, f"Invalid input for field/attribute type. Value: "
                                    f"{key_type}. '{key_type}' is not one of ['ssh', 'x509']")
        return params

    async def create(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        params = self._validate_body(request, (await read_json(request)).get("keypair"))
        user_id = self._target_user(request, ctx, params.get("user_id"), "create")
        name = params["name"].strip()
        key_type = params.get("type", "ssh")
        assert ctx.project_id is not None
        limit = quota_limits(self.cloud, ctx.project_id)["key_pairs"]
        if 0 <= limit <= len(self.state.where("keypairs", "user_id", user_id)):
            raise SimHTTPError(403, "Quota exceeded, too many key pairs.")
        if self.state.get("keypairs", f"{user_id}:{name}") is not None:
            raise SimHTTPError(409, f"Key pair '{name}' already exists.")
        private_key: str | None = None
        if "public_key" in params:
            public_key = str(params["public_key"])
            fingerprint = (x509_fingerprint(public_key) if key_type == "x509"
                           else ssh_fingerprint(public_key))
        else:
            if key_type == "x509":
                raise SimHTTPError(400, "Keypair data is invalid: Only ssh keys can be "
                                        "generated")
            loop = asyncio.get_running_loop()
            public_key, private_key = await loop.run_in_executor(None, generate_ssh_key)
            fingerprint = ssh_fingerprint(public_key)
        kp: Record = {"id": f"{user_id}:{name}", "name": name, "user_id": user_id,
                      "public_key": public_key, "fingerprint": fingerprint, "type": key_type,
                      "created_at": now_iso_micro()}
        self.state.put("keypairs", kp)
        out = {"name": name, "public_key": public_key, "fingerprint": fingerprint,
               "user_id": user_id}
        if at_least(request, "2.2"):
            out["type"] = key_type
        if private_key is not None:
            out["private_key"] = private_key
        return json_response({"keypair": out}, status=201 if at_least(request, "2.2") else 200)


def add_keypair_routes(router: web.UrlDispatcher, base: str, api: KeypairAPI, wrap: Any
                       ) -> None:
    router.add_get(f"{base}/os-keypairs", wrap(api.list_keypairs))
    router.add_post(f"{base}/os-keypairs", wrap(api.create))
    router.add_get(f"{base}/os-keypairs/{{name}}", wrap(api.show))
    router.add_delete(f"{base}/os-keypairs/{{name}}", wrap(api.delete))
