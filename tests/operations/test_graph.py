"""``plan --graph``: DOT written by migrator (names quoted), drawn by Graphviz where it is
installed, per step up to the limit and per tenant above it, coloured by state from a run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from migrator.errors import ConfigError
from migrator.operations.graph import (
    PER_STEP_LIMIT,
    GraphStep,
    quoted,
    step_dot,
    tenant_dot,
    write_graph,
)

HOSTILE = 'evil "tenant" \\ with\nnewline'


def small() -> list[GraphStep]:
    return [
        GraphStep("project:p", "project", "physics", "physics", None, ()),
        GraphStep("network:n", "network", "physics", "physics-net", None, ("project:p",)),
        GraphStep("project:h", "project", HOSTILE, HOSTILE, None, ()),
        GraphStep("rule:r", "security_group_rule", HOSTILE, "db: ingress from group web",
                  None, ("project:h", "network:n")),
    ]


def test_quoting_keeps_names_inside_their_string() -> None:
    assert quoted('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'


def test_one_node_per_step_in_a_cluster_per_tenant() -> None:
    text, nodes, edges = step_dot(small(), "plan p")
    assert (nodes, edges) == (4, 3)
    assert text == (
        'digraph "plan p" {\n'
        '  label="plan p"; labelloc=t; fontname=Helvetica; rankdir=LR;\n'
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10];\n'
        '  edge [color="#78909c"];\n'
        '  subgraph cluster_0 {\n'
        '    label="evil \\"tenant\\" \\\\ with\\nnewline"; style=rounded; color="#90a4ae";\n'
        '    s2 [label="project\\nevil \\"tenant\\" \\\\ with\\nnewline", '
        'fillcolor="#ffffff"];\n'
        '    s3 [label="security_group_rule\\ndb: ingress from group web", '
        'fillcolor="#ffffff"];\n'
        '  }\n'
        '  subgraph cluster_1 {\n'
        '    label="physics"; style=rounded; color="#90a4ae";\n'
        '    s0 [label="project\\nphysics", fillcolor="#ffffff"];\n'
        '    s1 [label="network\\nphysics-net", fillcolor="#ffffff"];\n'
        '  }\n'
        '  s0 -> s1;\n'
        '  s2 -> s3;\n'
        '  s1 -> s3;\n'
        '}\n')


def test_ten_thousand_tenants_are_one_node_each() -> None:
    kinds = ("project", "quota", "user", "network", "subnet")
    steps = []
    for t in range(10_000):
        tenant = f"tenant-{t:05d}"
        for i in range(25):
            deps = (f"{tenant}:0",) if i else ()
            if i == 24 and t % 2:  # odd tenants depend on the previous tenant's project
                deps = (f"tenant-{t - 1:05d}:0",)
            steps.append(GraphStep(f"{tenant}:{i}", kinds[i % 5], tenant, f"r{i}",
                                   "done" if t % 3 else "failed", deps))
    began = time.monotonic()
    text, nodes, edges = tenant_dot(steps, "plan big")
    print(f"250,000 steps summarised in {time.monotonic() - began:.2f} s: {len(text)} bytes")
    assert (nodes, edges) == (10_000, 5_000)
    assert text.count(" -> ") == 5_000 and text.count("[label=") == 10_000 + 5_000
    assert ('  t1 [label="tenant-00001\\n25 steps\\nproject 5, quota 5, user 5\\n'
            'network 5, subnet 5\\ndone 25", fillcolor="#c8e6c9"];') in text
    assert '  t0 -> t1 [label="1"];' in text
    assert 'fillcolor="#ffcdd2"' in text.split("  t3 [", 1)[1].split("\n", 1)[0]


def test_write_graph_picks_the_form_by_size_and_writes_dot(tmp_path: Path) -> None:
    drawn = write_graph(small(), tmp_path / "g.dot", title="plan p")
    assert (drawn.summarised, drawn.nodes, drawn.drawn_by) == (False, 4, None)
    assert (tmp_path / "g.dot").read_text() == step_dot(small(), "plan p")[0]
    many = [GraphStep(f"s{i}", "network", f"t{i % 3}", None, None, ())
            for i in range(PER_STEP_LIMIT + 1)]
    drawn = write_graph(many, tmp_path / "many.dot", title="big")
    assert (drawn.summarised, drawn.nodes, drawn.tenants) == (True, 3, 3)
    with pytest.raises(ConfigError, match=r"unknown format \.jpg; use \.dot, \.svg or \.png"):
        write_graph(small(), tmp_path / "g.jpg", title="x")
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_svg_and_png_are_drawn_by_graphviz(tmp_path: Path, suffix: str) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (Debian: apt-get install graphviz)")
    drawn = write_graph(small(), tmp_path / f"g{suffix}", title="plan p")
    data = (tmp_path / f"g{suffix}").read_bytes()
    assert drawn.drawn_by == "dot"
    if suffix == ".svg":
        assert data.startswith(b"<?xml") and b"physics&#45;net" in data
        assert b"evil &quot;tenant&quot;" in data
    else:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_graphviz_svg_is_refused_with_what_to_do(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ConfigError) as caught:
        write_graph(small(), tmp_path / "g.svg", title="x")
    assert str(caught.value) == (
        f"--graph {tmp_path / 'g.svg'}: drawing .svg needs Graphviz's dot program, which is "
        f"not installed; write {tmp_path / 'g.dot'} instead or install graphviz")
