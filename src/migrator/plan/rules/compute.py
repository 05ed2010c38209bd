"""Nova kinds: keypair (source id ``<user id>:<name>``), after its user and the tenant's
compute quota (``key_pairs``). Flavors are mapped, not migrated (issue 5 uses the map)."""

from __future__ import annotations

from migrator.plan.context import PlanState


def plan(state: PlanState) -> None:
    if not state.kinds.wants("keypair"):
        return
    for sid, item in sorted(state.inventory.kind("keypair").items()):
        user_id, _, name = sid.partition(":")
        user_key = state.key_if("user", user_id)
        if user_key is None:
            continue
        attrs = item.attributes
        target = {"name": attrs.get("name") or name, "public_key": attrs.get("public_key"),
                  "type": attrs.get("type") or "ssh"}
        tenant = item.tenant if item.tenant in state.tenants else state.user_tenants[user_id]
        after = [k for k in [state.key_if("quota", f"compute:{tenant}")] if k]
        state.add("keypair", sid, tenant_id=tenant, name=target["name"], attrs=target,
                  refs={"user_id": user_key}, after=after)
