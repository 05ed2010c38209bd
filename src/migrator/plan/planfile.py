"""Plan files: writing (fast, readable YAML) and reading (validated, hash-checked).

The writer emits block-style YAML whose scalars and small collections are JSON (JSON is
YAML), one step a few lines::

    - key: "subnet:4bef..."
      kind: subnet
      tenant: "physics"
      ...
      depends_on: ["network:7823...", "quota:network:1f78..."]
      spec:
        attrs: {"cidr": "2001:db8:100:2a::/64", "ip_version": 6, ...}
        refs: {"network_id": "network:7823...", "project_id": "project:1f78..."}

so that 200,000 steps are written in seconds (no YAML emitter), and a person can review the
plan of one tenant. :func:`read_plan` checks, in this order: the size (a file above
``max_bytes`` is refused unread), the text (streamed line by line through the reader of this
layout; any other layout through bounded_yaml's checks, then YAML: no anchors or aliases, at
most MAX_DEPTH levels, ``file:line``), the format and the header fields, every step's fields
and kind, the content hash (a file edited after planning is refused: PlanChangedError), unique
keys, dependencies and references naming known steps, and cycles. Every failure is a one-line
:class:`PlanError` naming the file and the line, or the step and the field.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import networkx as nx
import yaml

from migrator.bounded_yaml import MAX_DEPTH, YamlProblem, check_yaml, open_regular, yaml_problem
from migrator.dag import never_freed
from migrator.errors import PlanChangedError, PlanError
from migrator.jsoncodec import loads
from migrator.plan.model import FORMAT, KINDS, Plan, PlanStep, plan_hash
from migrator.spec import Spec

try:  # libyaml's loader: about ten times faster
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

HEADER_COMMENT = (
    "# migrator plan: review it, commit it, then rehearse and run it:\n"
    "#   migrator execute {path} --dry-run\n"
    "#   migrator execute {path}\n"
    "# Any edit invalidates content_hash: plan again instead of editing.\n"
)
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


# -- writing ---------------------------------------------------------------------------------


# One encoder for every value: json.dumps with a non-default option builds a new encoder per
# call, a third of the time of writing 2,000,000 small values of a 10,000-tenant plan.
_json = json.JSONEncoder(ensure_ascii=False).encode
# The C function _json uses for a str (ensure_ascii=False): the same text.
_string: Callable[[str], str] = json.encoder.encode_basestring


def _key(name: str) -> str:
    if _PLAIN_KEY.match(name) and name.lower() not in _YAML_WORDS:
        return name
    return _json(name)


def _block(lines: list[str], value: Mapping[str, Any], indent: str) -> None:
    """A mapping in block style; nested non-empty mappings nest, anything else is JSON."""
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            lines.append(f"{indent}{_key(str(key))}:")
            _block(lines, item, indent + "  ")
        else:
            lines.append(f"{indent}{_key(str(key))}: {_json(item)}")


def _text(value: str | None) -> str:
    """A string or null as JSON: what _json writes, without its per-call dispatch."""
    return "null" if value is None else _string(value)


def _step_lines(step: PlanStep) -> str:
    # One f-string per step and the C string encoder for the scalar fields: rendering the
    # 10,000-tenant plan took 3.45 s of CPU with one _json call per field, 3.2 s with this.
    depends = ", ".join(map(_string, step.depends_on))
    head = (f"- key: {_string(step.key)}\n  kind: {step.kind}\n  tenant: {_text(step.tenant)}"
            f"\n  source_id: {_string(step.source_id)}\n  name: {_text(step.name)}"
            f"\n  wave: {step.wave}\n  depends_on: [{depends}]\n  spec:\n")
    return head + "".join(f"    {_key(part)}: {_json(value)}\n"
                          for part, value in step.spec.items())


def render_plan(plan: Plan, path: str = "PLAN") -> Iterable[str]:
    """The plan file's text, in chunks."""
    lines = [HEADER_COMMENT.format(path=path).rstrip("\n")]
    _block(lines, plan.header(), "")
    lines.append("steps:" if plan.steps else "steps: []")
    yield "\n".join(lines) + "\n"
    batch: list[str] = []
    for step in plan.steps:
        batch.append(_step_lines(step))
        if len(batch) >= 2000:
            yield "".join(batch)
            batch = []
    yield "".join(batch)
    yield f"content_hash: {_json(plan.content_hash)}\n"


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan`` (its hash computed now) to ``path`` atomically."""
    file = Path(path)
    plan.content_hash = plan.compute_hash()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for chunk in render_plan(plan, str(file)):
                out.write(chunk)
        tmp.replace(file)
    except OSError as exc:
        raise PlanError(f"{file}: cannot write the plan: {exc.strerror}") from exc
    return file


# -- reading ---------------------------------------------------------------------------------


# 2.7 times the plan of 10,000 tenants (190 MiB): a bigger file is refused before it is read.
DEFAULT_MAX_PLAN_BYTES = 512 << 20
SIZE_HINT = " (a plan file of 10,000 tenants is about 190 MiB; give --max-plan-size to read a " \
            "bigger one)"
# A value nested this deep is left to the YAML reader, which names the line (MAX_DEPTH).
_FAST_VALUE_DEPTH = MAX_DEPTH // 2


def read_plan(path: str | Path, *, max_bytes: int = DEFAULT_MAX_PLAN_BYTES) -> Plan:
    """Load and validate a plan file (see the module docstring for what is checked)."""
    file = Path(path)
    return plan_from_data(load_plan_data(file, max_bytes=max_bytes), str(file))


def load_plan_data(path: str | Path, *, max_bytes: int = DEFAULT_MAX_PLAN_BYTES) -> Any:
    """A plan file's content, not yet validated, read in bounded time and memory: a regular
    file of at most ``max_bytes``, streamed line by line through :func:`fast_load`; anything
    else is read as YAML once :func:`check_yaml` has found no anchor or alias and no nesting
    deeper than MAX_DEPTH. PlanError ``FILE:LINE: problem`` otherwise."""
    file = Path(path)
    try:
        with open_regular(file, max_bytes, SIZE_HINT) as handle:
            lines = io.TextIOWrapper(handle, encoding="utf-8")
            try:
                return fast_load(lines)
            except (_NotFast, UnicodeDecodeError):
                pass
            finally:
                lines.detach()  # the handle stays open for the YAML reader
            try:
                handle.seek(0)
                check_yaml(handle, alias_budget=None, document="a plan file")
                handle.seek(0)
                return yaml.load(handle, Loader=_Loader)
            except YamlProblem as exc:
                if exc.line is None and exc.offset is not None:
                    exc.line = _line_at(handle, exc.offset)
                raise
    except FileNotFoundError:
        raise PlanError(f"{file}: no such plan file") from None
    except YamlProblem as exc:
        raise PlanError(exc.at(file)) from None
    except yaml.YAMLError as exc:
        raise PlanError(yaml_problem(exc).at(file)) from None
    except OSError as exc:
        raise PlanError(f"{file}: cannot read the plan: {exc.strerror or exc}") from exc


def _line_at(handle: Any, offset: int) -> int:
    """The 1-based line holding byte ``offset`` (read again in blocks: bounded memory)."""
    handle.seek(0)
    line, left = 1, offset
    while left > 0:
        block = handle.read(min(left, 1 << 20))
        if not block:
            break
        line += block.count(b"\n")
        left -= len(block)
    return line


class _NotFast(Exception):
    """The text is not exactly what :func:`render_plan` writes: read it as YAML instead."""


_DECODER = json.JSONDecoder()


def _pair(stripped: str) -> tuple[str, str | None]:
    """``key: <json>`` or ``key:`` (key plain or JSON-quoted) -> (key, value text or None)."""
    if stripped.startswith('"'):
        try:
            key, end = _DECODER.raw_decode(stripped)
        except ValueError:
            raise _NotFast from None
        rest = stripped[end:]
    else:
        name, sep, tail = stripped.partition(":")
        if not sep or not _PLAIN_KEY.match(name):
            raise _NotFast
        key, rest = name, ":" + tail
    if rest == ":":
        return str(key), None
    if not rest.startswith(": "):
        raise _NotFast
    return str(key), rest[2:]


def _value(text: str) -> Any:
    try:
        # orjson via jsoncodec: about two million values in a 10,000-tenant plan.
        value = loads(text)
    except (ValueError, RecursionError):
        if _PLAIN_KEY.match(text) and text.lower() not in _YAML_WORDS:
            return text  # a plain word (the step kind)
        raise _NotFast from None
    # Counting brackets is cheap; walking the value only happens for the rare long one.
    if (len(text) > 2 * _FAST_VALUE_DEPTH
            and text.count("[") + text.count("{") > _FAST_VALUE_DEPTH
            and _depth(value) > _FAST_VALUE_DEPTH):
        raise _NotFast
    return value


def _depth(value: Any) -> int:
    """Nesting depth of lists and mappings, without recursion."""
    deepest = 0
    todo = [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in item)
    return deepest


def fast_load(text: str | Iterable[str]) -> dict[str, Any]:
    """Parse the exact layout :func:`render_plan` writes (every value JSON), about twenty
    times faster than a YAML parser; anything else raises _NotFast. The content hash is
    checked on the result either way, so a file that reads differently is refused. ``text``:
    the whole text, or its lines (a file read line by line: no copy of the whole text)."""
    lines = io.StringIO(text, newline=None) if isinstance(text, str) else text
    out: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, out)]
    steps: list[dict[str, Any]] | None = None
    step: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    for line in lines:
        if line.endswith("\n"):
            line = line[:-1]
        if not line or line.startswith("#"):
            continue
        if steps is not None and not line.startswith(("- ", "  ")):
            steps = None  # back at the top level (content_hash)
        if steps is not None:
            if line.startswith("- "):
                key, value = _pair(line[2:])
                if value is None:
                    raise _NotFast
                step, spec = {key: _value(value)}, None
                steps.append(step)
            elif step is None:
                raise _NotFast
            elif line.startswith("    ") and spec is not None:
                key, value = _pair(line[4:])
                if value is None or line[4] == " ":
                    raise _NotFast
                spec[key] = _value(value)
            elif line[2] != " ":
                key, value = _pair(line[2:])
                if value is None:
                    if key != "spec":
                        raise _NotFast
                    spec = step[key] = {}
                else:
                    step[key], spec = _value(value), None
            else:
                raise _NotFast
            continue
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        while stack[-1][0] >= indent:
            stack.pop()
        key, value = _pair(stripped)
        parent = stack[-1][1]
        if key in parent:
            raise _NotFast
        if value is not None:
            parent[key] = _value(value)
        elif indent == 0 and key == "steps":
            steps = parent[key] = []
        else:
            if len(stack) > _FAST_VALUE_DEPTH:
                raise _NotFast
            child: dict[str, Any] = {}
            parent[key] = child
            stack.append((indent, child))
    return out


def plan_from_data(data: Any, file: str) -> Plan:
    if not isinstance(data, dict):
        raise PlanError(f"{file}: not a plan (expected a mapping with format, name, steps...)")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise PlanError(f"{file}: format: unsupported plan format {fmt!r} (this migrator "
                        f"reads format {FORMAT})")
    for name, kind in (("name", str), ("created_at", str), ("source", dict), ("target", dict),
                       ("selection", dict), ("mappings", dict), ("summary", dict),
                       ("steps", list), ("content_hash", str)):
        if name not in data:
            raise PlanError(f"{file}: {name}: missing")
        if not isinstance(data[name], kind):
            raise PlanError(f"{file}: {name}: expected {_type_name(kind)}, got "
                            f"{type(data[name]).__name__}")
    for section, fields in (("source", ("cloud", "snapshot_id", "inventory_hash")),
                            ("target", ("cloud",))):
        for name in fields:
            if data[section].get(name) in (None, ""):
                raise PlanError(f"{file}: {section}.{name}: missing")
    unknown = set(data) - {"format", "name", "created_at", "source", "target", "selection",
                           "mappings", "summary", "warnings", "steps", "content_hash"}
    if unknown:
        raise PlanError(f"{file}: {sorted(unknown)[0]}: unknown field")
    steps = [_step(raw, i, file) for i, raw in enumerate(data["steps"])]
    plan = Plan(name=data["name"], created_at=data["created_at"], source=data["source"],
                target=data["target"], selection=data["selection"], mappings=data["mappings"],
                summary=data["summary"], steps=steps, warnings=list(data.get("warnings") or []),
                format=fmt, content_hash=data["content_hash"])
    actual = plan_hash(plan.header(), data["steps"])
    if actual != plan.content_hash:
        raise PlanChangedError(f"{file}: content hash mismatch: the file changed after "
                               f"planning (recorded {plan.content_hash[:12]}..., content gives "
                               f"{actual[:12]}...); plan again instead of editing it")
    check_graph(plan, file)
    return plan


def _type_name(kind: type) -> str:
    return {str: "a string", dict: "a mapping", list: "a list", int: "an integer"}[kind]


def _step(raw: Any, index: int, file: str) -> PlanStep:
    where = f"{file}: steps[{index}]"
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: expected a mapping")
    key = raw.get("key")
    if isinstance(key, str) and key:
        where += f" ({key})"
    for name in ("key", "kind", "source_id", "wave", "depends_on", "spec"):
        if name not in raw:
            raise PlanError(f"{where}: {name}: missing")
    unknown = set(raw) - {"key", "kind", "tenant", "source_id", "name", "wave", "depends_on",
                          "spec"}
    if unknown:
        raise PlanError(f"{where}: {sorted(unknown)[0]}: unknown field")
    if raw["kind"] not in KINDS:
        raise PlanError(f"{where}: kind: unknown step kind {raw['kind']!r} (known: "
                        f"{', '.join(KINDS)})")
    if not isinstance(key, str) or key != f"{raw['kind']}:{raw['source_id']}":
        raise PlanError(f"{where}: key: expected '<kind>:<source_id>' "
                        f"({raw['kind']}:{raw['source_id']}), got {key!r}")
    if isinstance(raw["wave"], bool) or not isinstance(raw["wave"], int) or raw["wave"] < 0:
        raise PlanError(f"{where}: wave: expected a whole number >= 0, got {raw['wave']!r}")
    deps = raw["depends_on"]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise PlanError(f"{where}: depends_on: expected a list of step keys")
    spec = raw["spec"]
    if not isinstance(spec, dict):
        raise PlanError(f"{where}: spec: expected a mapping")
    for part in ("attrs", "refs"):
        if not isinstance(spec.get(part), dict):
            raise PlanError(f"{where}: spec.{part}: expected a mapping")
    for name in ("tenant", "name"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise PlanError(f"{where}: {name}: expected a string")
    return PlanStep(key=key, kind=raw["kind"], tenant=raw.get("tenant"),
                    source_id=str(raw["source_id"]), name=raw.get("name"), wave=raw["wave"],
                    depends_on=deps, spec=cast(Spec, spec))  # its parts checked above


def check_graph(plan: Plan, file: str) -> None:
    """Unique keys, dependencies and refs on known steps, no cycle, no dependency on a later
    wave."""
    position: dict[str, int] = {}
    for i, step in enumerate(plan.steps):
        if step.key in position:
            raise PlanError(f"{file}: steps[{i}] ({step.key}): key: appears twice")
        position[step.key] = i
    for i, step in enumerate(plan.steps):
        for dep in step.depends_on:
            found = position.get(dep)
            if found is None:
                raise PlanError(f"{file}: steps[{i}] ({step.key}): depends_on: unknown step "
                                f"{dep!r}")
            needed = plan.steps[found]
            if needed.wave > step.wave:
                raise PlanError(f"{file}: steps[{i}] ({step.key}): depends_on: {dep} is in a "
                                f"later wave ({needed.wave} > {step.wave})")
        for attr, ref in step.spec["refs"].items():
            for target in ref if isinstance(ref, list) else [ref]:
                if target is not None and target not in position:
                    raise PlanError(f"{file}: steps[{i}] ({step.key}): spec.refs.{attr}: "
                                    f"unknown step {target!r}")
                if target is not None and target not in step.depends_on:
                    raise PlanError(f"{file}: steps[{i}] ({step.key}): spec.refs.{attr}: "
                                    f"{target} is not in depends_on")
    if never_freed(len(plan.steps), ((i, position[dep]) for i, step in enumerate(plan.steps)
                                     for dep in step.depends_on)):
        graph: nx.DiGraph = nx.DiGraph()
        graph.add_edges_from((dep, step.key) for step in plan.steps for dep in step.depends_on)
        cycle = [edge[0] for edge in nx.find_cycle(graph)]
        raise PlanError(f"{file}: the dependencies form a cycle: "
                        f"{' -> '.join([*cycle, cycle[0]])}")

