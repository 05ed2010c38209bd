"""Reading Glance (v2: images and their members) and Cinder (v2 volumes) of a legacy cloud.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from migrator.clouds.errors import CloudCallError
from migrator.clouds.image_formats import Probe, known_probe, probe_image, wants_probe
from migrator.clouds.source_base import (
    DENIED,
    GIB,
    Collector,
    SourceBase,
    Tenant,
    Unreadable,
    tenant_of,
)
from migrator.store.inventory import Item


class StorageReads(SourceBase):
    """Glance images and members, Cinder volumes."""
    def _read_images(self, selected: Sequence[Tenant], limited: bool, out: Collector) -> None:
        images: list[dict[str, Any]] | None = None
        self._shared_images = set()
        if not limited:
            try:
                images = self.list_all(self.admin, "image", "/images", "images")
                self._shared_images = {i["id"] for i in self.list_all(
                    self.admin, "image", "/images", "images", {"visibility": "shared"})}
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                images = None
        if images is None:
            images = self._per_tenant_lists(selected, "image", "image", "/images", "images",
                                            {}, out, owner=("owner",))
            # A member token cannot tell which of its images have members: ask for each
            # image it owns that is not public.
            self._shared_images = {i["id"] for i in images if i.get("visibility") != "public"}
        for raw in images:
            checksum = raw.get("checksum")
            out.add(Item("image", raw["id"], tenant_of(raw, "owner"), raw.get("name"),
                         dict(raw), size_bytes=raw.get("size"),
                         content_hash=f"md5:{checksum}" if checksum else None))

    def _read_members(self, out: Collector) -> None:
        images = [item for item in out.items.values()
                  if item.kind == "image" and item.source_id in self._shared_images]

        def one(item: Item) -> None:
            path = f"/images/{item.source_id}/members"
            try:
                body = self.admin.get_json("image", path, resource=f"image {item.source_id}")
            except CloudCallError as exc:
                if exc.status not in DENIED and exc.status != 404:
                    raise
                tenant = Tenant(item.tenant or "", self._names.get(item.tenant or "", ""))
                handle = self._tenant_handle(tenant) if item.tenant else None
                body = None
                if handle is not None and handle is not self.admin:
                    body = handle.get_json("image", path, resource=f"image {item.source_id}",
                                           allow_404=True)
                if body is None:
                    out.denied(Unreadable(item.tenant, tenant.name or None, "image",
                                          f"members of image {item.source_id}: "
                                          f"HTTP {exc.status}"))
                    return
            item.attributes["members"] = sorted(
                ({"member_id": m.get("member_id"), "status": m.get("status")}
                 for m in (body or {}).get("members") or []),
                key=lambda m: str(m["member_id"]))

        self._map(one, images)
        for item in out.items.values():
            if item.kind == "image":
                item.attributes.setdefault("members", [])

    def _read_image_formats(self, out: Collector, limited: bool) -> int:
        """Record what each active image's bytes are (``content_format``); returns how many
        images were read (the others kept the previous snapshot's result, or hold none)."""
        # Images with the same md5 and size hold the same bytes (copies of one image in
        # many tenants are common): one read for them all.
        todo: dict[tuple[Any, Any], list[Item]] = {}
        for item in out.items.values():
            if item.kind != "image" or item.attributes.get("status") != "active":
                continue
            attrs = item.attributes
            if not wants_probe(attrs):
                Probe("raw", "no bytes").record(attrs)
                continue
            known = known_probe(attrs, self.known_images.get(item.source_id))
            if known is not None:
                known.record(attrs)
            else:
                same = (attrs.get("checksum") or item.source_id, attrs.get("size"))
                todo.setdefault(same, []).append(item)

        def tenant_handle(item: Item) -> Any:
            if not item.tenant:
                return None
            return self._tenant_handle(Tenant(item.tenant, self._names.get(item.tenant, "")))

        def read(item: Item) -> Probe:
            # The admin's token first, then the owner's (the only one in limited mode).
            handle = tenant_handle(item) if limited else self.admin
            size = int(item.attributes["size"])
            result = Probe(None, "no credentials can download it")
            if handle is not None:
                result = probe_image(handle.proxy("image"), item.source_id, size,
                                     timeout=handle.timeout)
            if result.format is None and not limited:
                owner = tenant_handle(item)
                if owner is not None and owner is not self.admin:
                    result = probe_image(owner.proxy("image"), item.source_id, size,
                                         timeout=owner.timeout)
            return result

        def one(items: list[Item]) -> None:
            result = Probe(None)
            for item in items:  # the next copy only when this one could not be read
                result = read(item)
                if result.format is not None:
                    break
            for item in items:
                result.record(item.attributes)

        self._map(one, list(todo.values()))
        return len(todo)

    def _read_volumes(self, selected: Sequence[Tenant], limited: bool,
                      out: Collector) -> None:
        volumes: list[dict[str, Any]] | None = None
        if not limited:
            try:
                volumes = self.list_all(self.admin, "block_storage", "/volumes/detail",
                                        "volumes", {"all_tenants": 1})
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
        if volumes is None:
            volumes = self._per_tenant_lists(selected, "volume", "block_storage",
                                             "/volumes/detail", "volumes", {}, out,
                                             owner=("os-vol-tenant-attr:tenant_id",))
        for raw in volumes:
            attrs = dict(raw)
            attrs.pop("links", None)
            size = raw.get("size")
            out.add(Item("volume", raw["id"], tenant_of(raw, "os-vol-tenant-attr:tenant_id"),
                         raw.get("name") or raw.get("display_name"), attrs,
                         size_bytes=int(size) * GIB if isinstance(size, int) else None))
