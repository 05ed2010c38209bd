"""Handlers for Nova kinds: keypair (compute quotas are ``quota`` steps, identity.py).

- keypair: source id ``<user_id>:<name>``; attrs {name, public_key, type}; refs {user_id}.
  Created by the admin for the target user (microversion 2.10). A keypair of that user with
  the same name and the same public key fingerprint is adopted; a different key under the
  same name is an error naming both fingerprints. The target id is ``<user_id>:<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrator.clouds.target import TargetCloud, fingerprint
from migrator.engine.handlers import StepContext
from migrator.engine.steps import StepSnapshot
from migrator.errors import StepFailedError
from migrator.handlers.base import ResourceHandler


class KeypairHandler(ResourceHandler):
    kind = "keypair"
    verify_fields = ("name", "type")
    # Keypairs have no tags or description: the (user, name, fingerprint) triple is the mark.
    marked = False

    @staticmethod
    def _user_and_name(step: StepSnapshot, attrs: Mapping[str, Any]) -> tuple[str, str]:
        user_id, name = attrs.get("user_id"), attrs.get("name")
        if not user_id or not name:
            raise StepFailedError(f"step {step.key!r}: needs user_id (spec.refs) and name")
        return str(user_id), str(name)

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        user_id, name = self._user_and_name(step, attrs)
        found = tc.find_keypair(user_id, name)
        if found is None:
            return None
        want, have = fingerprint(str(attrs.get("public_key", ""))), fingerprint(
            str(found.get("public_key", "")))
        if want != have:
            raise StepFailedError(
                f"step {step.key!r}: user {user_id} already has a keypair {name!r} on "
                f"{tc.name} with another key (fingerprint {have}, wanted {want})"
            )
        return found

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        user_id, _ = self._user_and_name(step, attrs)
        return tc.create_keypair(user_id, attrs)

    def target_id_of(self, resource: Mapping[str, Any], attrs: Mapping[str, Any]) -> str:
        return f"{attrs['user_id']}:{resource['name']}"

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        user_id, _, name = target_id.partition(":")
        return tc.get_keypair(user_id, name)

    def extra_checks(self, tc: TargetCloud, step: StepSnapshot, attrs: dict[str, Any],
                     resource: dict[str, Any]) -> list[str]:
        problems = []
        if resource.get("user_id") and resource["user_id"] != attrs.get("user_id"):
            problems.append(f"user_id: wanted {attrs.get('user_id')}, target has "
                            f"{resource['user_id']}")
        want = fingerprint(str(attrs.get("public_key", "")))
        have = fingerprint(str(resource.get("public_key", "")))
        if want != have:
            problems.append(f"public key fingerprint: wanted {want}, target has {have}")
        return problems
