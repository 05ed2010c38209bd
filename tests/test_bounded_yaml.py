"""bounded_yaml: what is refused, where, and what honest YAML still passes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from migrator.bounded_yaml import (
    YamlProblem,
    check_yaml,
    decode_text,
    read_bytes,
    read_yaml_text,
)


def problem(text: str | bytes, **kwargs: object) -> tuple[int | None, str]:
    with pytest.raises(YamlProblem) as caught:
        data = text.encode() if isinstance(text, str) else text
        decode_text(data)
        check_yaml(data, **kwargs)  # type: ignore[arg-type]
    return caught.value.line, caught.value.problem


def test_honest_aliases_pass_and_load_as_before() -> None:
    text = ("rules: &web\n  - {port: 80}\n  - {port: 443}\n"
            "physics: {rules: *web}\nchemistry: {rules: *web}\n")
    check_yaml(text)
    assert yaml.safe_load(text)["chemistry"]["rules"] == [{"port": 80}, {"port": 443}]


def test_the_alias_budget_counts_expanded_nodes() -> None:
    # &a names 1 + 3 nodes; each alias costs 4: 4 aliases = 16 nodes.
    text = "a: &a [1, 2, 3]\nb: [*a, *a, *a, *a]\n"
    check_yaml(text, alias_budget=16)
    assert problem(text, alias_budget=15) == (
        2, "aliases expand to more than 15 nodes (at *a): refused as an alias bomb")
    # Nested aliases count what they expand to: &b holds 1 + 2 * 4 nodes.
    nested = "a: &a [1, 2, 3]\nb: &b [*a, *a]\nc: [*b]\n"
    check_yaml(nested, alias_budget=17)
    assert problem(nested, alias_budget=16)[0] == 3


def test_self_reference_undefined_alias_depth_and_no_anchors() -> None:
    assert problem("a: &a\n  b: [1, *a]\n") == (
        2, "alias *a is inside the anchor &a it refers to (a structure that contains itself)")
    assert problem("a: *nowhere\n") == (1, "alias *nowhere refers to no anchor defined before "
                                           "it")
    assert problem("a: " + "[" * 10 + "]" * 10, max_depth=5) == (1, "nested deeper than 5 "
                                                                    "levels")
    assert problem("a:\n" + "".join(" " * i + "- \n" for i in range(1, 9)), max_depth=5) == (
        6, "nested deeper than 5 levels")
    assert problem("x: 1\ny: &k 2\n", alias_budget=None, document="a plan file") == (
        2, "anchor &k: a plan file takes no anchors or aliases")


def test_binary_content_names_its_line() -> None:
    assert problem(b"a: 1\nb: \xff\n") == (2, "binary content, not YAML text (byte 0xff is not "
                                              "UTF-8)")
    assert problem(b"a: 1\n\nb: \x00\n") == (3, "binary content, not YAML text (a NUL byte)")
    assert problem("a: 1\nb: \x07\n")[0] == 2  # a control character: libyaml's own refusal
    assert problem("a: [1\nb: 2\n")[1].startswith("not valid YAML: ")


def test_size_limit_and_files_that_are_not_regular(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" * 100)
    assert read_bytes(big, 500) == b"a: 1\n" * 100
    with pytest.raises(YamlProblem, match=r"^500 bytes is more than the limit of 499 bytes$"):
        read_bytes(big, 499)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    # A FIFO would be read without end: refused without reading (the open does not block
    # because the FIFO is opened for writing too).
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        with pytest.raises(YamlProblem, match="not a regular file"):
            read_bytes(fifo)
    finally:
        os.close(writer)
    good = tmp_path / "good.yaml"
    good.write_text("a: &x 1\nb: *x\n")
    assert yaml.safe_load(read_yaml_text(good)) == {"a": 1, "b": 1}
