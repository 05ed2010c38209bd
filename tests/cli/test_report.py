"""``migrator report``: the HTML file opened in headless Chromium (a screenshot and the DOM
checked), hostile names shown as text, and the JSON of the same content.

The run is made by the real executor with test handlers (tests/engine/kinds.py): a tenant
whose name is a script, a step that fails once and is retried, one that fails for good and
blocks its dependant.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from migrator.engine.handlers import HandlerRegistry
from migrator.engine.runs import StepSpec, create_run
from migrator.operations.execute import execute_run
from migrator.store.db import make_engine, session_factory
from migrator.store.models import Run
from migrator.store.verifications import record_verification
from tests.cli.conftest import Invoke
from tests.engine.kinds import FlakyHandler

HOSTILE = "<script>document.title='pwned'</script>"
HOSTILE_NAME = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
WINDOW = (1280, 1600)


def make_run(url: str) -> None:
    """Run ``wave-1``: physics (three steps, one failing once) and the hostile tenant (two
    steps: one fails for good, its dependant is blocked)."""
    engine = make_engine(url)
    factory = session_factory(engine)
    steps = [
        StepSpec("project:p", "project", tenant="physics", name="physics", source_id="p"),
        StepSpec("network:n", "network", tenant="physics", name="physics-net", source_id="n"),
        StepSpec("image:i", "image", tenant="physics", name=HOSTILE_NAME, source_id="i",
                 spec={"lookup": {"size": 4096}}),
        StepSpec("project:h", "project", tenant=HOSTILE, name=HOSTILE, source_id="h"),
        StepSpec("network:h", "network", tenant=HOSTILE, name="net", source_id="hn"),
    ]
    create_run(factory, "wave-1", steps, [("network:n", "project:p"),
                                          ("image:i", "project:p"),
                                          ("network:h", "project:h")])
    flaky = FlakyHandler()
    flaky.times["network:n"] = 1
    flaky.final.add("project:h")
    registry = HandlerRegistry()
    for kind in ("project", "network", "image"):
        registry.register(kind, flaky)
    result = execute_run(url, "wave-1", registry=registry, handle_sigint=False,
                         backoff_base=0.01, workers=2)
    assert result.status == "failed"
    with engine.begin() as conn:
        run_id = conn.execute(select(Run.id)).scalar_one()
        now = datetime.now(UTC)
        record_verification(
            conn, run_id=run_id, tenant=None, deep=False, outcome="differences",
            started_at=now, finished_at=now,
            summary={"tenants": [{"tenant": "physics", "kinds": {"image": {"differs": 1},
                                                                 "project": {"match": 1}},
                                  "drift": 0}]},
            findings={"items": [{"tenant": "physics", "kind": "image", "name": HOSTILE_NAME,
                                 "source_id": "i", "target_id": "t", "result": "differs",
                                 "detail": f"property os_distro: wanted {HOSTILE!r}"}]})
    engine.dispose()


@pytest.fixture
def run_url(db_url: str) -> str:
    make_run(db_url)
    return db_url


def chromium() -> str:
    """The chromium program; skipped where it is missing (a failure under CI=true, where
    .ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, check=False)


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed image data)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.fixture
def report_file(invoke: Invoke, run_url: str, tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "wave-1.html"
    result = invoke("--db", run_url, "report", "--run", "wave-1", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"Wrote the report of run wave-1 to {out} "
                             f"({out.stat().st_size} bytes).\n")
    yield out


def test_the_report_opens_offline_in_chromium_with_its_tenant_table(
        report_file: Path, tmp_path: Path) -> None:
    html = report_file.read_text()
    # Self-contained: no script, nothing fetched from anywhere.
    assert "<script" not in html and "src=" not in html.replace("src=x", "")
    assert "http://" not in html and "https://" not in html and "<link" not in html
    shot = tmp_path / "report.png"
    taken = run_chromium(tmp_path, f"--screenshot={shot}",
                         f"--window-size={WINDOW[0]},{WINDOW[1]}", report_file.as_uri())
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    width, height, distinct = png_facts(shot)
    assert (width, height) == WINDOW
    assert distinct > 20, "the screenshot is blank"
    dom = run_chromium(tmp_path, "--dump-dom", report_file.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert '<table id="tenant-table">' in text
    tenant_rows = text.split('<table id="tenant-table">', 1)[1].split("</table>", 1)[0]
    assert tenant_rows.count('<tr class="tenant">') == 2
    assert "<td>physics</td>" in tenant_rows
    # The hostile names are text: escaped in the DOM, and neither ran.
    assert "<td>&lt;script&gt;document.title='pwned'&lt;/script&gt;</td>" in tenant_rows
    assert "&lt;img src=x onerror=" in text
    assert "<title>Migration report: run wave-1</title>" in text
    assert "pwned</title>" not in text and "data-pwned" not in text.split("<body", 1)[1][:200]


def test_the_report_shows_failures_timeline_verification_and_id_map(
        report_file: Path) -> None:
    html = report_file.read_text()
    summary = html.split('<section id="summary">', 1)[1].split("</section>", 1)[0]
    assert "<dt>Status</dt><dd><span class=\"bad\">failed</span></dd>" in summary
    assert "1 step(s) failed for good; 2 error(s) met on the way" in summary
    failures = html.split('<section id="failures">', 1)[1].split("</section>", 1)[0]
    assert "physics-net" in failures and "cannot be created" not in failures
    assert "the volume is attached" in failures and "final" in failures
    timeline = html.split('<section id="timeline">', 1)[1].split("</section>", 1)[0]
    assert "created &rarr; running" in timeline and "running &rarr; failed" in timeline
    verification = html.split('<section id="verification">', 1)[1].split("</section>", 1)[0]
    assert "property os_distro: wanted &quot;&lt;script&gt;" in verification
    id_map = html.split('<section id="id-map">', 1)[1].split("</section>", 1)[0]
    assert id_map.count("<details>") == 2 and id_map.count("<tr><td>") == 5


def test_the_json_report_holds_the_same_content(invoke: Invoke, run_url: str,
                                                tmp_path: Path) -> None:
    result = invoke("--db", run_url, "report", "--run", "wave-1", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run"]["name"] == "wave-1" and data["run"]["status"] == "failed"
    assert data["steps"] == {"done": 3, "failed": 1, "blocked": 1} and data["total"] == 5
    tenants = {t["tenant"]: t for t in data["tenants"]}
    assert set(tenants) == {"physics", HOSTILE}
    assert tenants["physics"]["kinds"] == {"project": {"done": 1}, "network": {"done": 1},
                                           "image": {"done": 1}}
    assert tenants["physics"]["verification"]["result"] == "differences"
    assert tenants[HOSTILE]["verification"]["result"] == "not verified"
    assert sorted(e["kind"] for e in data["errors"]) == ["network", "project"]
    assert data["error_count"] == 2 and data["failed_steps"] == 1
    assert [e["to_state"] for e in data["timeline"]["events"] if e["to_state"]] == [
        "created", "running", "failed"]
    assert sum(data["timeline"]["completions"]) == 3
    assert [(r["tenant"], r["kind"], r["state"]) for r in data["id_map"]] == [
        (HOSTILE, "project", "failed"), (HOSTILE, "network", "blocked"),
        ("physics", "project", "done"), ("physics", "network", "done"),
        ("physics", "image", "done")]
    # Written to a file: the same document.
    out = tmp_path / "wave-1.json"
    assert invoke("--db", run_url, "report", "--run", "wave-1", "-o", str(out)).exit_code == 0
    from_file = json.loads(out.read_text())
    assert {k: v for k, v in from_file.items() if k != "generated_at"} == {
        k: v for k, v in data.items() if k != "generated_at"}


def test_report_refusals(invoke: Invoke, run_url: str, tmp_path: Path) -> None:
    html = invoke("--db", run_url, "report", "--run", "wave-1")
    assert html.exit_code == 2 and "an HTML report needs a file: -o FILE.html" in html.stderr
    missing = invoke("--db", run_url, "report", "--run", "nosuch", "-o",
                     str(tmp_path / "x.html"))
    assert (missing.exit_code, missing.stderr) == (
        4, "Error: no run named 'nosuch' in the state database\n")
    assert not (tmp_path / "x.html").exists()
    unwritable = invoke("--db", run_url, "report", "--run", "wave-1", "-o",
                        str(tmp_path / "no" / "such" / "dir" / "x.html"))
    assert unwritable.exit_code == 2 and unwritable.stderr.startswith("Error: ")
    assert "cannot write the report" in unwritable.stderr
