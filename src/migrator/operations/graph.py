"""``plan --graph FILE``: the DAG of a plan (or of a run, coloured by state) for Graphviz.

The DOT text is written by migrator itself (no Graphviz library); ``.svg`` and ``.png`` are
drawn by Graphviz's ``dot`` program when it is installed. Steps are grouped by tenant
(one cluster each). Above :data:`PER_STEP_LIMIT` steps the graph is summarised per tenant:
one node per tenant with its step counts per kind (and per state, from a run) and one edge per
pair of tenants whose steps depend on each other, because dot needs minutes for a few
thousand nodes and nobody can read the result; a plan of 10,000 tenants (250,000 steps)
becomes 10,000 nodes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from migrator.errors import ConfigError, NotFoundError
from migrator.operations.context import database_errors, open_state
from migrator.plan.model import KIND_ORDER, Plan
from migrator.store.plans import run_id_named
from migrator.store.steps import graph_rows

# Steps drawn one node each up to this many; above, one node per tenant.
PER_STEP_LIMIT = 500
FORMATS = (".dot", ".gv", ".svg", ".png")
DOT_TIMEOUT_S = 600.0
STATE_COLOURS = {
    "done": "#c8e6c9", "skipped": "#e8f5e9", "running": "#fff3c4", "verifying": "#fff3c4",
    "pending": "#eceff1", "failed": "#ffcdd2", "blocked": "#ffe0b2", "rolled_back": "#d7ccc8",
}
PLANNED = "#ffffff"
# The state that colours a tenant's node: the first of these its steps are in.
WORST_FIRST = ("failed", "blocked", "running", "verifying", "pending", "rolled_back",
               "skipped", "done")


@dataclass(frozen=True, slots=True)
class GraphStep:
    key: str
    kind: str
    tenant: str | None
    name: str | None
    state: str | None  # None: drawn from a plan
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class GraphResult:
    path: Path
    steps: int
    tenants: int
    summarised: bool  # one node per tenant
    nodes: int
    edges: int
    drawn_by: str | None  # "dot" when Graphviz drew an .svg/.png


def plan_steps(plan: Plan) -> list[GraphStep]:
    return [GraphStep(s.key, s.kind, s.tenant, s.name, None, tuple(s.depends_on))
            for s in plan.steps]


def run_steps(url: str, run: str) -> list[GraphStep]:
    """The steps of run ``run`` with their states and dependencies, from the database."""
    with open_state(url) as engine, database_errors(url), engine.connect() as conn:
        run_id = run_id_named(conn, run)
        if run_id is None:
            raise NotFoundError(f"no run named {run!r} in the state database")
        rows = graph_rows(conn, run_id)
    return [GraphStep(r.key, r.kind, r.tenant, r.name, r.state, r.depends_on) for r in rows]


def write_graph(steps: Sequence[GraphStep], path: str | Path, *, title: str,
                per_step_limit: int = PER_STEP_LIMIT) -> GraphResult:
    """Write the graph of ``steps`` to ``path`` (.dot/.gv: DOT text; .svg/.png: drawn by
    Graphviz's ``dot``, which must be installed)."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--graph {out}: unknown format {suffix or '(none)'}; use "
                          ".dot, .svg or .png")
    dot = shutil.which("dot") if suffix in (".svg", ".png") else None
    if suffix in (".svg", ".png") and dot is None:
        raise ConfigError(f"--graph {out}: drawing {suffix} needs Graphviz's dot program, "
                          f"which is not installed; write {out.with_suffix('.dot')} instead "
                          "or install graphviz")
    summarised = len(steps) > per_step_limit
    text, nodes, edges = (tenant_dot(steps, title) if summarised else step_dot(steps, title))
    tenants = len({s.tenant for s in steps})
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if dot is None:
            tmp.write_text(text, encoding="utf-8")
        else:
            done = subprocess.run([dot, f"-T{suffix[1:]}", "-o", str(tmp)],
                                  input=text.encode(), capture_output=True,
                                  timeout=DOT_TIMEOUT_S, check=False)
            if done.returncode != 0:
                reason = " ".join(done.stderr.decode(errors="replace").split())[:300]
                raise ConfigError(f"--graph {out}: dot failed: {reason}")
        tmp.replace(out)
    except OSError as exc:
        raise ConfigError(f"--graph {out}: cannot write: {exc.strerror}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return GraphResult(out, len(steps), tenants, summarised, nodes, edges,
                       "dot" if dot else None)


def quoted(text: str) -> str:
    """A DOT double-quoted string: names are user input."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _header(title: str) -> list[str]:
    return [f"digraph {quoted(title)} {{",
            f"  label={quoted(title)}; labelloc=t; fontname=Helvetica; rankdir=LR;",
            "  node [shape=box, style=\"rounded,filled\", fontname=Helvetica, fontsize=10];",
            "  edge [color=\"#78909c\"];"]


def step_dot(steps: Sequence[GraphStep], title: str) -> tuple[str, int, int]:
    """One node per step, one cluster per tenant, an edge from each dependency to its
    dependent; (DOT text, nodes, edges)."""
    index = {s.key: i for i, s in enumerate(steps)}
    by_tenant: dict[str | None, list[int]] = defaultdict(list)
    for i, s in enumerate(steps):
        by_tenant[s.tenant].append(i)
    lines = _header(title)
    for n, (tenant, members) in enumerate(sorted(by_tenant.items(),
                                                 key=lambda kv: (kv[0] is None, kv[0] or ""))):
        lines.append(f"  subgraph cluster_{n} {{")
        lines.append(f"    label={quoted(tenant or 'cloud-wide')}; style=rounded; "
                     "color=\"#90a4ae\";")
        for i in members:
            s = steps[i]
            label = f"{s.kind}\n{s.name or s.key}" + (f"\n[{s.state}]" if s.state else "")
            colour = STATE_COLOURS.get(s.state or "", PLANNED) if s.state else PLANNED
            lines.append(f"    s{i} [label={quoted(label)}, fillcolor=\"{colour}\"];")
        lines.append("  }")
    edges = 0
    for i, s in enumerate(steps):
        for dep in s.depends_on:
            j = index.get(dep)
            if j is not None:
                lines.append(f"  s{j} -> s{i};")
                edges += 1
    lines.append("}")
    return "\n".join(lines) + "\n", len(steps), edges


def tenant_dot(steps: Sequence[GraphStep], title: str) -> tuple[str, int, int]:
    """One node per tenant (its steps per kind, and per state from a run), an edge per pair
    of tenants with dependencies between them (labelled with how many)."""
    tenant_of = {s.key: s.tenant for s in steps}
    kinds: dict[str | None, Counter[str]] = defaultdict(Counter)
    states: dict[str | None, Counter[str]] = defaultdict(Counter)
    links: Counter[tuple[str | None, str | None]] = Counter()
    for s in steps:
        kinds[s.tenant][s.kind] += 1
        if s.state:
            states[s.tenant][s.state] += 1
        for dep in s.depends_on:
            other = tenant_of.get(dep, s.tenant)
            if other != s.tenant:
                links[(other, s.tenant)] += 1
    order = sorted(kinds, key=lambda t: (t is None, t or ""))
    node = {t: f"t{i}" for i, t in enumerate(order)}
    lines = _header(f"{title} ({len(steps)} steps, one node per tenant)")
    for t in order:
        counts = kinds[t]
        label = [t or "cloud-wide", f"{sum(counts.values())} steps",
                 _counts(counts, KIND_ORDER)]
        colour = PLANNED
        if states[t]:
            label.append(_counts(states[t], {s: i for i, s in enumerate(WORST_FIRST)}))
            worst = next(s for s in WORST_FIRST if states[t].get(s))
            colour = STATE_COLOURS.get(worst, PLANNED)
        lines.append(f"  {node[t]} [label={quoted(chr(10).join(label))}, "
                     f"fillcolor=\"{colour}\"];")
    for (a, b), n in sorted(links.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        lines.append(f"  {node[a]} -> {node[b]} [label=\"{n}\"];")
    lines.append("}")
    return "\n".join(lines) + "\n", len(order), len(links)


def _counts(counts: Counter[str], order: dict[str, int]) -> str:
    items = sorted(counts.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    parts = [f"{k} {n}" for k, n in items]
    # Three per line keeps the node readable.
    return "\n".join(", ".join(parts[i:i + 3]) for i in range(0, len(parts), 3))

