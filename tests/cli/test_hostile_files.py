"""Hostile files are refused by the CLI in one line naming the file (and the line), exit code
of their kind, in bounded memory: each case is a ``migrator`` child process whose own peak RSS
is measured (tests/cli/process.py). The whole CLI with its imports takes about 120 MiB here; an
alias bomb of nine levels took 2.7 GiB before (and ten crashed the process).

Plan files (``execute PLAN --dry-run``; exit 7), migrator.yaml (``plan --config``; exit 2),
clouds.yaml (``discover``; exit 2) and simulator seeds (``sim serve --seed``; exit 2).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from migrator.operations.plan import make_plan
from tests.cli.process import Finished, run_migrator
from tests.plan.conftest import save, write_config

PEAK_RSS_LIMIT_MIB = 200.0


def laughs(levels: int, indent: str = "  ") -> list[str]:
    """A block-sequence body of ``levels`` anchors, each list holding ten aliases of the
    previous one: 10**levels strings once expanded. The alias budget (100,000 nodes) runs out
    in the fifth line (``&a4 [*a3, ...]``)."""
    lines = [f'{indent}- &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", '
             '"lol"]']
    for i in range(1, levels):
        lines.append(f"{indent}- &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return lines


def refused(result: Finished, code: int, pattern: str) -> None:
    """One ``Error:`` line matching ``pattern``, exit ``code``, peak RSS well bounded."""
    assert result.exit_code == code, (result.exit_code, result.stderr[-2000:])
    assert len(result.error_lines) == 1, result.stderr[-2000:]
    assert re.fullmatch(f"Error: {pattern}", result.error_lines[0]), result.error_lines[0]
    assert result.peak_rss_mib < PEAK_RSS_LIMIT_MIB, result.peak_rss_mib


# -- plan files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(state database URL, text of a real 3-tenant plan)."""
    root = tmp_path_factory.mktemp("planned")
    from tests.conftest import upgraded

    url = upgraded(f"sqlite:///{root / 'state.db'}")
    save(url)
    path = make_plan(url, config=write_config(root), offline=True,
                     output=root / "plan.yaml").path
    return url, path.read_text()


def with_warnings(text: str, body: list[str]) -> str:
    """The plan with its ``warnings: []`` line replaced by ``warnings:`` and ``body``."""
    assert "\nwarnings: []\n" in text
    return text.replace("\nwarnings: []\n", "\nwarnings:\n" + "\n".join(body) + "\n")


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def execute_dry_run(url: str, plan: Path, *extra: str) -> Finished:
    return run_migrator("--db", url, "execute", str(plan), "--dry-run", *extra)


def test_plan_with_an_alias_bomb_in_warnings(planned: tuple[str, str], tmp_path: Path) -> None:
    url, text = planned
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(with_warnings(text, laughs(9)))
    result = execute_dry_run(url, bomb)
    refused(result, 7, f"{re.escape(str(bomb))}:{line_of(bomb.read_text(), '&a0')}: anchor "
                       "&a0: a plan file takes no anchors or aliases")


def test_plan_nested_100000_levels(planned: tuple[str, str], tmp_path: Path) -> None:
    url, text = planned
    deep = tmp_path / "deep.yaml"
    deep.write_text(text.replace("\nwarnings: []\n",
                                 "\nwarnings: " + "[" * 100_000 + "]" * 100_000 + "\n"))
    result = execute_dry_run(url, deep)
    refused(result, 7, f"{re.escape(str(deep))}:{line_of(text, 'warnings:')}: nested deeper "
                       "than 64 levels")
    # The same in block style (one level per line): the line of the 65th level is named.
    block = tmp_path / "block.yaml"
    block.write_text(with_warnings(text, [" " * (2 * i) + "- " for i in range(1, 5000)]))
    result = execute_dry_run(url, block)
    expected = line_of(text, "warnings:") + 64
    refused(result, 7, f"{re.escape(str(block))}:{expected}: nested deeper than 64 levels")


def test_oversized_plans_are_refused_unread(planned: tuple[str, str], tmp_path: Path) -> None:
    url, text = planned
    # A valid plan followed by 3 MiB of spaces, under a limit of 2 MiB...
    padded = tmp_path / "padded.yaml"
    padded.write_text(text + " " * (3 << 20))
    result = execute_dry_run(url, padded, "--max-plan-size", "2MiB")
    refused(result, 7, rf"{re.escape(str(padded))}: 3\.0 MiB is more than the limit of 2\.0 "
                       r"MiB \(a plan file of 10,000 tenants is about 190 MiB; give "
                       r"--max-plan-size to read a bigger one\)")
    # ...and a gigabyte (sparse: it costs no disk) under the default limit.
    huge = tmp_path / "huge.yaml"
    with huge.open("w") as out:
        out.write(text)
        out.truncate(1 << 30)
    result = execute_dry_run(url, huge)
    refused(result, 7, rf"{re.escape(str(huge))}: 1\.0 GiB is more than the limit of 512\.0 "
                       r"MiB .*")
    # Within the limit, the same padded plan is read (trailing spaces are only spaces).
    accepted = execute_dry_run(url, padded, "--max-plan-size", "4MiB")
    assert "content hash" not in accepted.stderr and "MiB" not in accepted.stderr


def test_binary_plan(planned: tuple[str, str], tmp_path: Path) -> None:
    url, text = planned
    binary = tmp_path / "binary.yaml"
    head = text.encode()[:200]
    binary.write_bytes(head + b"\n\xff\xfe\x00\x01garbage\n")
    result = execute_dry_run(url, binary)
    line = head.count(b"\n") + 2
    refused(result, 7, f"{re.escape(str(binary))}:{line}: binary content, not YAML text .*")


# -- migrator.yaml --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "body", "line", "problem"), [
    ("self-alias", "source: &s\n  cloud: legacy\n  again: *s\n", 3,
     r"alias \*s is inside the anchor &s it refers to \(a structure that contains itself\)"),
    ("alias-bomb", "selection:\n  waves:\n" + "\n".join(laughs(9, "    ")) + "\n", 7,
     r"aliases expand to more than 100,000 nodes \(at \*a3\): refused as an alias bomb"),
    ("binary", "source:\n  cloud: \x00\x01\x02\n", 2,
     r"binary content, not YAML text \(a NUL byte\)"),
])
def test_bad_configuration(planned: tuple[str, str], tmp_path: Path, name: str, body: str,
                           line: int, problem: str) -> None:
    url, _ = planned
    config = tmp_path / f"{name}.yaml"
    config.write_text(body)
    result = run_migrator("--db", url, "plan", "--config", str(config), "--offline", "-o",
                          str(tmp_path / "p.yaml"))
    refused(result, 2, f"{re.escape(str(config))}:{line}: {problem}")
    assert not (tmp_path / "p.yaml").exists()


def test_configuration_of_invalid_utf8(planned: tuple[str, str], tmp_path: Path) -> None:
    url, _ = planned
    config = tmp_path / "latin1.yaml"
    config.write_bytes(b"source:\n  cloud: caf\xe9\n")
    result = run_migrator("--db", url, "plan", "--config", str(config), "--offline")
    refused(result, 2, rf"{re.escape(str(config))}:2: binary content, not YAML text \(byte "
                       r"0xe9 is not UTF-8\)")


# -- clouds.yaml ----------------------------------------------------------------------------

CLOUDS = "clouds:\n  legacy:\n    auth:\n      auth_url: http://127.0.0.1:9/identity\n"


@pytest.mark.parametrize(("name", "body", "line", "problem"), [
    ("invalid", CLOUDS + "    region_name: [RegionOne\n", 6,
     r"not valid YAML: while parsing a flow sequence, did not find expected ',' or ']'"),
    ("binary", CLOUDS.replace("legacy", "leg\x00acy"), 2,
     r"binary content, not YAML text \(a NUL byte\)"),
    ("self-alias", "clouds: &c\n  legacy: *c\n", 2,
     r"alias \*c is inside the anchor &c it refers to \(a structure that contains itself\)"),
    ("alias-bomb", "lol:\n" + "\n".join(laughs(9)) + "\n" + CLOUDS, 6,
     r"aliases expand to more than 100,000 nodes \(at \*a3\): refused as an alias bomb"),
])
def test_bad_clouds_yaml(db_url: str, tmp_path: Path, name: str, body: str, line: int,
                         problem: str) -> None:
    clouds = tmp_path / f"{name}.yaml"
    clouds.write_text(body)
    result = run_migrator("--db", db_url, "discover", "--cloud", "legacy", "--clouds-yaml",
                          str(clouds))
    refused(result, 2, f"{re.escape(str(clouds))}:{line}: {problem}")


def test_bad_clouds_yaml_found_by_the_sdk_search(db_url: str, tmp_path: Path) -> None:
    """Without --clouds-yaml, the file openstacksdk would take ($OS_CLIENT_CONFIG_FILE here) is
    checked: a broken one is named, not skipped into "no cloud named legacy"."""
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(CLOUDS + "  target: [\n")
    result = run_migrator("--db", db_url, "discover", "--cloud", "legacy", cwd=tmp_path,
                          env={"OS_CLIENT_CONFIG_FILE": str(clouds)})
    refused(result, 2, f"{re.escape(str(clouds))}:6: not valid YAML: .*")
    clouds.write_text("- just\n- a list\n")
    result = run_migrator("--db", db_url, "discover", "--cloud", "legacy", cwd=tmp_path,
                          env={"OS_CLIENT_CONFIG_FILE": str(clouds)})
    refused(result, 2, f"{re.escape(str(clouds))}: not a clouds file .*got list\\)")


# -- simulator seeds ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "body", "line", "problem"), [
    ("self-alias", "clouds:\n  legacy: &l\n    tenants: [*l]\n", 3,
     r"alias \*l is inside the anchor &l it refers to \(a structure that contains itself\)"),
    ("alias-bomb", "clouds:\n  legacy:\n    roles:\n" + "\n".join(laughs(9, "    ")) + "\n",
     8, r"aliases expand to more than 100,000 nodes \(at \*a3\): refused as an alias bomb"),
    ("binary", "clouds:\n  legacy:\n    tenants: [{name: \"\x00\"}]\n", 3,
     r"binary content, not YAML text \(a NUL byte\)"),
])
def test_bad_seed(tmp_path: Path, name: str, body: str, line: int, problem: str) -> None:
    seed = tmp_path / f"{name}.yaml"
    seed.write_text(body)
    result = run_migrator("sim", "serve", "--seed", str(seed), "--data-dir",
                          str(tmp_path / "sim"))
    refused(result, 2, f"{re.escape(str(seed))}:{line}: {problem}")
