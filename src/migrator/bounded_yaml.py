"""Reading YAML files that may be hostile, in bounded time and memory.

A YAML parser alone is not safe against a crafted file: an alias block (``&a [*b, *b, ...]``
nested ten times, the "billion laughs") costs nothing to parse but billions of nodes to
walk, hash or dump; an alias inside its own anchor makes a structure that contains itself;
libyaml's composer and PyYAML's constructor recurse once per nesting level; and a file of a
gigabyte is read whole. So every YAML file migrator reads (plan files, migrator.yaml,
clouds.yaml, simulator seeds) goes through this module first:

- :func:`read_bytes`: a regular file of at most ``max_bytes`` (checked before reading);
- :func:`decode_text`: UTF-8 text, or "binary" naming the line of the first bad byte;
- :func:`check_yaml`: one pass over libyaml's event stream (no tree is built) that refuses
  nesting deeper than ``max_depth``, an alias inside its own anchor, an undefined alias, and
  more than ``alias_budget`` nodes reached through aliases in total (each alias counts the
  nodes of what it names, expanded); ``alias_budget=None`` refuses anchors and aliases
  altogether (plan files have none).

Problems are :class:`YamlProblem` s carrying the 1-based line; the caller turns them into its
own one-line error with :meth:`YamlProblem.at`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

try:  # libyaml: the event pass costs a fraction of a load
    from yaml import CSafeLoader as EventLoader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as EventLoader  # type: ignore[assignment]

MAX_DEPTH = 64  # nesting levels: a plan file needs about 10, migrator.yaml and seeds fewer
# Nodes reachable through aliases in one file: generous for hand-written anchors (a rule list
# reused a few times), a millionth of what nine levels of "laughs" expand to.
ALIAS_BUDGET = 100_000
MAX_CONFIG_BYTES = 16 << 20  # migrator.yaml, clouds.yaml: a few KiB in practice

__all__ = ["ALIAS_BUDGET", "MAX_CONFIG_BYTES", "MAX_DEPTH", "YamlProblem", "check_size",
           "check_yaml", "decode_text", "format_size", "open_regular", "read_bytes",
           "read_yaml_text", "yaml_problem"]


class YamlProblem(Exception):
    """What is wrong with a YAML file and where (``line`` 1-based, None: the whole file)."""

    def __init__(self, problem: str, line: int | None = None, offset: int | None = None
                 ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.offset = offset  # byte offset, when only that is known (a streamed source)

    def at(self, file: str | Path) -> str:
        """``FILE:LINE: PROBLEM`` (or ``FILE: PROBLEM``), one line."""
        where = f"{file}:{self.line}" if self.line is not None else str(file)
        return f"{where}: {self.problem}"


def format_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def check_size(size: int, max_bytes: int, hint: str = "") -> None:
    if size > max_bytes:
        raise YamlProblem(f"{format_size(size)} is more than the limit of "
                          f"{format_size(max_bytes)}{hint}")


def open_regular(path: Path, max_bytes: int, hint: str = "") -> Any:
    """``path`` opened for binary reading once it is known to be a regular file of at most
    ``max_bytes`` (a FIFO or a device would be read without end). OSError propagates."""
    handle = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    try:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise YamlProblem("not a regular file")
        check_size(info.st_size, max_bytes, hint)
    except BaseException:
        handle.close()
        raise
    return handle


def read_bytes(path: Path, max_bytes: int = MAX_CONFIG_BYTES, hint: str = "") -> bytes:
    """The file's bytes, refused (YamlProblem) beyond ``max_bytes``; OSError propagates."""
    with open_regular(path, max_bytes, hint) as handle:
        data: bytes = handle.read(max_bytes + 1)  # the file may have grown since fstat
    check_size(len(data), max_bytes, hint)
    return data


def decode_text(data: bytes) -> str:
    """UTF-8 text (a byte-order mark is dropped), or YamlProblem naming the line of the first
    byte that is not UTF-8, or of a NUL byte (text files have none)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlProblem(f"binary content, not YAML text (byte 0x{data[exc.start]:02x} is "
                          "not UTF-8)", line) from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise YamlProblem("binary content, not YAML text (a NUL byte)",
                          data.count(b"\n", 0, nul) + 1)
    return text


def read_yaml_text(path: Path, max_bytes: int = MAX_CONFIG_BYTES, *,
                   max_depth: int = MAX_DEPTH, alias_budget: int | None = ALIAS_BUDGET) -> str:
    """A YAML file's text once :func:`check_yaml` has passed it: safe to load with PyYAML."""
    data = read_bytes(path, max_bytes)
    text = decode_text(data)
    check_yaml(data, max_depth=max_depth, alias_budget=alias_budget)
    return text


def yaml_problem(exc: yaml.YAMLError, data: bytes | str | None = None,
                 max_depth: int = MAX_DEPTH) -> YamlProblem:
    """A PyYAML/libyaml error as a YamlProblem with its line (for an unacceptable byte, the
    line is found in ``data`` when given)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):
        if line is None and data is not None:
            # position: a byte offset for bytes (and for text, which libyaml reads as UTF-8)
            raw = data if isinstance(data, bytes) else data.encode("utf-8", "replace")
            line = raw.count(b"\n", 0, exc.position) + 1
        return YamlProblem(f"binary content, not YAML text (character #x{exc.character:04x}: "
                           f"{exc.reason})", line, exc.position)
    problem = getattr(exc, "problem", None) or str(exc)
    if "maximum nesting depth" in problem:  # libyaml's own limit, met in flow collections
        return YamlProblem(f"nested deeper than {max_depth} levels", line)
    context = getattr(exc, "context", None)
    if context and problem and not problem.startswith(context):
        problem = f"{context}, {problem}"
    return YamlProblem(f"not valid YAML: {' '.join(str(problem).split())}", line)


_STARTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_ENDS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def check_yaml(source: bytes | str | Any, *, max_depth: int = MAX_DEPTH,
               alias_budget: int | None = ALIAS_BUDGET, document: str = "this file") -> None:
    """Refuse (YamlProblem) what would make loading or walking the document unbounded (see
    the module docstring). ``source``: bytes, text, or a binary file object (streamed);
    ``document`` names it in the refusal of an anchor (``alias_budget=None``)."""
    # One frame per open collection: [its anchor or None, nodes inside it so far].
    frames: list[list[Any]] = []
    sizes: dict[str, int] = {}  # anchor -> nodes of what it names, expanded
    through_aliases = 0
    line = 0
    try:
        for event in yaml.parse(source, Loader=EventLoader):
            line = event.start_mark.line + 1 if event.start_mark is not None else line
            if isinstance(event, yaml.AliasEvent):
                if alias_budget is None:
                    raise YamlProblem(f"alias *{event.anchor}: {document} takes no anchors "
                                      "or aliases", line)
                name = str(event.anchor)
                if any(frame[0] == name for frame in frames):
                    raise YamlProblem(f"alias *{name} is inside the anchor &{name} it refers "
                                      "to (a structure that contains itself)", line)
                size = sizes.get(name)
                if size is None:
                    raise YamlProblem(f"alias *{name} refers to no anchor defined before it",
                                      line)
                through_aliases += size
                if through_aliases > alias_budget:
                    raise YamlProblem(f"aliases expand to more than {alias_budget:,} nodes "
                                      f"(at *{name}): refused as an alias bomb", line)
                if frames:
                    frames[-1][1] += size
                continue
            anchor = getattr(event, "anchor", None)
            if anchor is not None and alias_budget is None:
                raise YamlProblem(f"anchor &{anchor}: {document} takes no anchors or "
                                  "aliases", line)
            if isinstance(event, yaml.ScalarEvent):
                if anchor is not None:
                    sizes[anchor] = 1
                if frames:
                    frames[-1][1] += 1
            elif isinstance(event, _STARTS):
                if len(frames) >= max_depth:
                    raise YamlProblem(f"nested deeper than {max_depth} levels", line)
                frames.append([anchor, 1])
            elif isinstance(event, _ENDS):
                name, size = frames.pop()
                if name is not None:
                    sizes[name] = size
                if frames:
                    frames[-1][1] += size
    except yaml.YAMLError as exc:
        raise yaml_problem(exc, source if isinstance(source, bytes | str) else None,
                           max_depth) from None
