"""Image property rules as data: the rule kinds, their validation and how each one applies.

A rule list comes from the configuration (``image_properties.rules``) or from
:data:`migrator.transfer.properties.DEFAULT_RULES`; :func:`parse_rules` validates it into a
:class:`RuleSet`. Every list item is a mapping with exactly one rule kind as its key (plus an
optional ``name`` shown in plans)::

    - rename: {from: os_command_line, to: os_kernel_args, overwrite: false}
    - drop: {keys: [hw_boot_mode, "vmware_*"]}              # shell globs
    - keep: {keys: [vmware_ostype]}                        # exempt from every drop
    - set: {key: hw_firmware_type, value: uefi, when: {hw_boot_mode: uefi}}
    - set_if_architecture: {architecture: aarch64, set: {hw_machine_type: virt}}
    - map_values: {key: architecture, values: {arm64: aarch64}}

Semantics (also in docs/image-properties.md): every property passes through unless a rule
changes it; rules apply in list order to the properties as the previous rules left them;
``keep`` is declarative (its keys are never dropped, wherever the keep rule stands); ``when``
matches when every listed property has one of the given values; ``set`` overwrites unless
``overwrite: false``, ``rename`` does not overwrite an existing target key unless
``overwrite: true`` (the source key is dropped either way).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migrator.errors import ConfigError
from migrator.values import describe

Path = tuple[str | int, ...]

# Nova's architecture names (nova/objects/fields.py Architecture.ALL): anything else in an
# image's ``architecture`` is refused by modern Nova's image metadata object.
ARCHITECTURES = (
    "alpha", "armv6", "armv7l", "armv7b", "aarch64", "cris", "i686", "ia64", "lm32", "m68k",
    "microblaze", "microblazeel", "mips", "mipsel", "mips64", "mips64el", "openrisc",
    "parisc", "parisc64", "ppc", "ppcle", "ppc64", "ppc64le", "ppcemb", "s390", "s390x",
    "sh4", "sh4eb", "sparc", "sparc64", "unicore32", "x86_64", "xtensa", "xtensaeb",
)
KINDS = ("rename", "drop", "keep", "set", "set_if_architecture", "map_values")


@dataclass(frozen=True)
class Change:
    """One property changed by one rule: ``before``/``after`` None when absent."""

    key: str
    before: str | None
    after: str | None
    rule: str


class RulesError(ConfigError):
    """A rule list is wrong; ``path`` is the key path (for a file:line prefix), ``problem``
    the message without it."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{dotted(path)}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Context:
    """What a rule sees while it applies: the properties, the changes so far, the keep set."""

    def __init__(self, props: dict[str, str], kept: Callable[[str], bool]) -> None:
        self.props = props
        self.changes: list[Change] = []
        self.kept = kept

    def put(self, key: str, value: str | None, rule: str) -> None:
        before = self.props.get(key)
        if before == value:
            return
        if value is None:
            del self.props[key]
        else:
            self.props[key] = value
        self.changes.append(Change(key, before, value, rule))


@dataclass(frozen=True)
class Rule:
    label: str  # "image_properties.rules[2] set" or the rule's own name

    def apply(self, ctx: Context) -> None:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def keeps(self, key: str) -> bool:
        return False


@dataclass(frozen=True)
class Rename(Rule):
    source: str = ""
    target: str = ""
    overwrite: bool = False

    def apply(self, ctx: Context) -> None:
        if self.source not in ctx.props:
            return
        value = ctx.props[self.source]
        if self.overwrite or self.target not in ctx.props:
            ctx.put(self.target, value, self.label)
        ctx.put(self.source, None, self.label)


@dataclass(frozen=True)
class Drop(Rule):
    keys: tuple[str, ...] = ()

    def apply(self, ctx: Context) -> None:
        for key in sorted(ctx.props):
            if _matches(key, self.keys) and not ctx.kept(key):
                ctx.put(key, None, self.label)


@dataclass(frozen=True)
class Keep(Rule):
    keys: tuple[str, ...] = ()

    def apply(self, ctx: Context) -> None:
        """Nothing to do in sequence: :meth:`keeps` is consulted by every drop."""

    def keeps(self, key: str) -> bool:
        return _matches(key, self.keys)


@dataclass(frozen=True)
class SetValues(Rule):
    values: tuple[tuple[str, str], ...] = ()
    when: tuple[tuple[str, tuple[str, ...]], ...] = ()
    overwrite: bool = True

    def apply(self, ctx: Context) -> None:
        if not all(ctx.props.get(key) in wanted for key, wanted in self.when):
            return
        for key, value in self.values:
            if self.overwrite or key not in ctx.props:
                ctx.put(key, value, self.label)


@dataclass(frozen=True)
class MapValues(Rule):
    key: str = ""
    values: tuple[tuple[str, str], ...] = ()

    def apply(self, ctx: Context) -> None:
        current = ctx.props.get(self.key)
        for old, new in self.values:
            if current == old:
                ctx.put(self.key, new, self.label)
                return


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


@dataclass(frozen=True)
class RuleSet:
    """Validated rules, applied in order by :func:`migrator.transfer.properties.translate`."""

    rules: tuple[Rule, ...] = ()
    source: list[dict[str, Any]] = field(default_factory=list, compare=False, repr=False)

    def keeps(self, key: str) -> bool:
        return any(rule.keeps(key) for rule in self.rules)

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(self.rules + other.rules, [*self.source, *other.source])


# -- validation ---------------------------------------------------------------------------------
def parse_rules(raw: Any, where: str | Path = "image_properties.rules") -> RuleSet:
    """Validate a rule list (the YAML as loaded); ``where`` is the list's key path, used in
    every error: ``image_properties.rules[2].set_if_architecture: unknown architecture
    'arm' (did you mean 'armv6'?)``. Raises :class:`RulesError` (a ConfigError)."""
    base: Path = tuple(where.split(".")) if isinstance(where, str) else tuple(where)
    if raw is None:
        return RuleSet()
    if not isinstance(raw, list):
        raise RulesError(base, f"expected a list of rules, got {describe(raw)}")
    rules = [_parse_one(item, (*base, i)) for i, item in enumerate(raw)]
    return RuleSet(tuple(rules), [dict(item) for item in raw])


def _parse_one(item: Any, path: Path) -> Rule:
    if not isinstance(item, dict):
        raise RulesError(path, f"expected a mapping with one rule kind ({', '.join(KINDS)}), "
                               f"got {describe(item)}")
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise RulesError((*path, "name"), f"expected a non-empty string, got "
                                          f"{describe(name)}")
    kinds = [k for k in item if k != "name"]
    if len(kinds) != 1 or kinds[0] not in KINDS:
        unknown = [k for k in kinds if k not in KINDS]
        detail = f"unknown rule kind {unknown[0]!r}" if unknown else (
            f"{len(kinds)} rule kinds in one item" if kinds else "no rule kind")
        raise RulesError(path, f"{detail} (expected exactly one of {', '.join(KINDS)})")
    kind = str(kinds[0])
    label = name or f"{dotted(path)} {kind}"
    body = _mapping(item[kind], (*path, kind))
    return _PARSERS[kind](body, (*path, kind), label)


def _rename(body: dict[str, Any], p: Path, label: str) -> Rule:
    _known(body, p, ("from", "to", "overwrite"))
    source, target = _key(body.get("from"), (*p, "from")), _key(body.get("to"), (*p, "to"))
    if source == target:
        raise RulesError(p, f"'from' and 'to' are both {source!r}")
    return Rename(label, source, target, _bool(body.get("overwrite", False), (*p, "overwrite")))


def _drop(body: dict[str, Any], p: Path, label: str) -> Rule:
    _known(body, p, ("keys",))
    return Drop(label, _keys(body.get("keys"), (*p, "keys")))


def _keep(body: dict[str, Any], p: Path, label: str) -> Rule:
    _known(body, p, ("keys",))
    return Keep(label, _keys(body.get("keys"), (*p, "keys")))


def _set(body: dict[str, Any], p: Path, label: str) -> Rule:
    _known(body, p, ("key", "value", "values", "when", "overwrite"))
    if "values" in body:
        if "key" in body or "value" in body:
            raise RulesError(p, "give either key and value or values, not both")
        values = _string_map(body["values"], (*p, "values"))
    else:
        values = ((_key(body.get("key"), (*p, "key")),
                   _value(body.get("value"), (*p, "value"), body.get("key"))),)
    when = _when(body.get("when"), (*p, "when"))
    return SetValues(label, values, when, _bool(body.get("overwrite", True), (*p, "overwrite")))


def _set_if_architecture(body: dict[str, Any], p: Path, label: str) -> Rule:
    _known(body, p, ("architecture", "set", "overwrite"))
    archs = _strings(body.get("architecture"), (*p, "architecture"))
    for arch in archs:
        _check_architecture(arch, p)
    values = _string_map(body.get("set"), (*p, "set"))
    return SetValues(label, values, (("architecture", archs),),
               _bool(body.get("overwrite", True), (*p, "overwrite")))


def _map_values(body: dict[str, Any], p: Path, label: str) -> Rule:
    _known(body, p, ("key", "values"))
    key = _key(body.get("key"), (*p, "key"))
    values = _string_map(body.get("values"), (*p, "values"))
    if key == "architecture":
        for _old, new in values:
            _check_architecture(new, (*p, "values"))
    return MapValues(label, key, values)


_PARSERS: dict[str, Callable[[dict[str, Any], Path, str], Rule]] = {
    "rename": _rename, "drop": _drop, "keep": _keep, "set": _set,
    "set_if_architecture": _set_if_architecture, "map_values": _map_values,
}


# -- small checks -------------------------------------------------------------------------------
def _mapping(value: Any, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RulesError(path, f"expected a mapping, got {describe(value)}")
    return value


def _known(body: Mapping[str, Any], path: Path, known: tuple[str, ...]) -> None:
    for key in body:
        if key not in known:
            raise RulesError((*path, str(key)), f"unknown key (known: {', '.join(known)})")


def _key(value: Any, path: Path) -> str:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise RulesError(path, f"expected a property name, got {describe(value)}")
    return value


def _value(value: Any, path: Path, key: Any) -> str:
    # Glance v2 property values are strings: YAML's true/1 are refused, not guessed at.
    if not isinstance(value, str):
        hint = " (quote it: property values are strings)" if value is not None else ""
        raise RulesError(path, f"expected a string value for {key!r}, got "
                               f"{describe(value)}{hint}")
    return value


def _bool(value: Any, path: Path) -> bool:
    if not isinstance(value, bool):
        raise RulesError(path, f"expected true or false, got {describe(value)}")
    return value


def _keys(value: Any, path: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RulesError(path, f"expected a list of property names or globs, got "
                               f"{describe(value)}")
    return tuple(_key(v, (*path, i)) for i, v in enumerate(value))


def _strings(value: Any, path: Path) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise RulesError(path, f"expected a string or a list of strings, got "
                               f"{describe(value)}")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise RulesError((*path, i) if isinstance(value, list) else path,
                             f"expected a string, got {describe(item)}")
    return tuple(items)


def _string_map(value: Any, path: Path) -> tuple[tuple[str, str], ...]:
    body = _mapping(value, path)
    if not body:
        raise RulesError(path, "expected at least one property")
    return tuple((_key(k, (*path, str(k))), _value(v, (*path, str(k)), k))
                 for k, v in body.items())


def _when(value: Any, path: Path) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if value is None:
        return ()
    body = _mapping(value, path)
    out = []
    for key, wanted in body.items():
        sub = (*path, str(key))
        values = _strings(wanted, sub)
        if key == "architecture":
            for arch in values:
                _check_architecture(arch, sub)
        out.append((_key(key, sub), values))
    return tuple(out)


def _check_architecture(arch: str, path: Path) -> None:
    if arch in ARCHITECTURES:
        return
    close = difflib.get_close_matches(arch.lower(), ARCHITECTURES, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else " (see Nova's architecture names)"
    raise RulesError(path, f"unknown architecture {arch!r}{hint}")
