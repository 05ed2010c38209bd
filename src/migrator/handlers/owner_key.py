"""Booting a server with its owner's key (Nova looks a ``key_name`` up among the key pairs of
the calling user, and copies the key into the server when it is created).

With the owner's credentials (the user migrator created, with the password it recorded) the
boot is the owner's own and the key is theirs already. Without them (``password_policy:
external``, an owner who is not migrated, an owner who changed the password) migrator's user
boots the server with the owner's public key imported under the owner's key name, and deletes
that copy after the boot. Migrator's user has one key pair namespace for every project, so
two such boots with the same key name (servers of one owner, or owners whose keys share a
name) must not interleave between the import and the boot: in one process they queue on a
lock per key name, across worker processes (``--processes``, ``migrator worker`` on other
hosts) on a named lock in the state database (engine/named_locks.py), renewed just before
the boot. A copy a killed worker left behind is replaced: under the lock no other boot can
be using it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.clouds.errors import CloudCallError
from migrator.engine.handlers import StepInterrupted
from migrator.engine.named_locks import LockLost, NamedLock, held
from migrator.handlers.identity import password_key
from migrator.handlers.passwords import read_password_file
from migrator.handlers.server_errors import ServerFailed
from migrator.transfer.errors import TransferError
from migrator.transfer.volume_api import Api

if TYPE_CHECKING:
    from migrator.handlers.server_phases import Cutover

log = logging.getLogger(__name__)

# How long a worker may hold a key's lock without renewing it (import, boot and delete are
# a few API calls); a holder found dead on the same host frees it at once.
KEY_LOCK_SECONDS = 300.0
# Longest wait between two looks at a lock another process holds.
KEY_LOCK_POLL = 0.5

_LOCAL: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


def owner_api(cut: Cutover) -> Api | None:
    """The owner's own API (scoped to the migrated project), or None when migrator's user
    must boot with the owner's key imported."""
    owner = dict(cut.lookup.get("owner") or {})
    if owner.get("method") != "password":
        return None
    password = owner_password(owner)
    if password is None:
        return None
    handle = cut.admin().handle
    key = f"owner:{owner.get('user_id')}:{cut.project_id}"
    try:
        scoped = cut.services.scoped(key, lambda: handle.as_user(
            str(owner["name"]), password, str(owner.get("domain_id") or "default"),
            cut.project_id))
    except CloudCallError as exc:
        if exc.status != 401:
            raise
        # The owner changed the password migrator gave them: the key is imported for
        # migrator's user instead (the server's key is still the owner's).
        log.warning("%s: cannot act as its owner %s (%s); booting it as migrator's user "
                    "with the owner's key", cut.what(), owner.get("name"), exc)
        return None
    return Api(scoped)


def owner_password(owner: dict[str, Any]) -> str | None:
    """The password migrator gave the owner (never logged, never in a checkpoint)."""
    policy = owner.get("password_policy")
    if policy == "fixed":
        return os.environ.get(str(owner.get("password_env") or "")) or None
    if policy == "random" and owner.get("password_file"):
        entries = read_password_file(Path(str(owner["password_file"])))
        return entries.get(password_key({"name": owner.get("name"),
                                         "domain_id": owner.get("domain_id")}))
    return None


@contextmanager
def owner_key_imported(cut: Cutover) -> Iterator[Callable[[], None]]:
    """Migrator's user holds the owner's public key under the owner's key name for the
    ``with`` block (no key name: nothing to do), alone among the workers of every process
    sharing the state database; the copy is deleted at the end. Yields ``ready()``, to call
    just before the boot: it renews the lock, or fails the try (retried) if it was lost."""
    name = str(cut.attrs.get("key_name") or "")
    ref = cut.attrs.get("keypair")
    if not name or not ref:
        yield lambda: None
        return
    user_id, _, key_name = str(ref).partition(":")
    found = cut.admin().find_keypair(user_id, key_name)
    if found is None:
        raise ServerFailed(f"{cut.what()}: the owner's key pair {key_name!r} is not on the "
                           "target")
    lock = NamedLock(cut.ctx.factory, f"keypair:{name}", KEY_LOCK_SECONDS)
    with _local_lock(name), held(lock, cut.stop, min(cut.poll, KEY_LOCK_POLL),
                                 lambda: StepInterrupted(cut.step.key)):
        _import(cut.dst, name, str(found["public_key"]))

        def ready() -> None:
            try:
                lock.renew()
            except LockLost as exc:
                raise TransferError(f"{cut.what()}: {exc}", retryable=True) from exc

        try:
            yield ready
        finally:
            cut.dst.request("compute", "DELETE", f"os-keypairs/{name}",
                            f"deleting keypair {name}", missing_ok=True)


def _import(api: Api, name: str, public_key: str) -> None:
    """The key under ``name`` for migrator's user: whatever copy is there (left by a killed
    worker: under the lock no boot uses it) is replaced."""
    mine = api.request("compute", "GET", f"os-keypairs/{name}", f"reading keypair {name}",
                       missing_ok=True)
    if mine is not None:
        if (mine.get("keypair") or {}).get("public_key", "").strip() == public_key.strip():
            return
        api.request("compute", "DELETE", f"os-keypairs/{name}", f"deleting keypair {name}",
                    missing_ok=True)
    api.request("compute", "POST", "os-keypairs", f"importing keypair {name}",
                body={"keypair": {"name": name, "public_key": public_key}}, ok=(200, 201))


@contextmanager
def _local_lock(name: str) -> Iterator[None]:
    """The boots of this process with key ``name`` queue here first (without polling the
    database)."""
    with _LOCAL_GUARD:
        lock = _LOCAL.setdefault(name, threading.Lock())
    with lock:
        yield
