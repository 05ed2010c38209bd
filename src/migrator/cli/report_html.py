"""The run report as one self-contained HTML file: inline CSS, no script, no external resource
(it opens anywhere, offline). Every value that comes from the clouds or the state database
goes through :func:`esc` (names are user input: a tenant called ``<script>`` is text).

Written as it is rendered: the id map is streamed from the database into the file.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any, TextIO

from migrator.cli.status import human_bytes, human_duration
from migrator.operations.report import RunReport, TenantReport
from migrator.operations.status import order_states
from migrator.store.audit import IdMapRow

STATE_CLASS = {"done": "ok", "skipped": "ok", "failed": "bad", "blocked": "bad",
               "running": "busy", "verifying": "busy", "pending": "wait",
               "rolled_back": "wait"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 color:#1d232a;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}
main{padding:8px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:18px 0;
 padding:6px 18px 16px}
h2{font-size:17px;margin:12px 0 10px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e8ebef;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 18px;margin:6px 0}
dt{color:#5a6672}dd{margin:0}
.ok{color:#17663a}.bad{color:#b3261e;font-weight:600}.busy{color:#8a5a00}.wait{color:#5a6672}
.pill{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;
 background:#eef1f4;margin:1px 2px}
.pill.ok{background:#e3f4e8}.pill.bad{background:#fbe4e2}.pill.busy{background:#fdf1d8}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.bars{display:flex;align-items:flex-end;height:90px;gap:2px;border-bottom:1px solid #aab3bd;
 margin:8px 0 2px}
.bars div{flex:1;background:#3f7cb3;min-height:1px}
.axis{display:flex;justify-content:space-between;color:#5a6672;font-size:12px}
.muted{color:#5a6672}
"""


def esc(value: Any) -> str:
    """A value as HTML text (quotes too: values also land in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def _state_pills(steps: dict[str, int]) -> str:
    return "".join(f'<span class="pill {STATE_CLASS.get(s, "wait")}">{esc(s)} {n}</span>'
                   for s, n in steps.items() if n)


def write_report(out: TextIO, report: RunReport) -> None:
    """The whole document into ``out`` (the id map streamed from the open report)."""
    title = f"Migration report: run {report.run.name}" + (
        f", tenant {report.tenant}" if report.tenant else "")
    out.write("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
              f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n")
    out.write(f"<header><h1>{esc(title)}</h1><p>Generated {esc(_time(report.generated_at))} "
              f"by migrator from {esc(report.database)}</p></header>\n<main>\n")
    _summary(out, report)
    _tenants(out, report)
    _servers(out, report)
    _verification(out, report)
    _failures(out, report)
    _timeline(out, report)
    _id_map(out, report)
    out.write("</main>\n</body>\n</html>\n")


def _summary(out: TextIO, r: RunReport) -> None:
    run = r.run
    v = r.verification
    verdict = "not verified"
    if v is not None:
        scope = f" (tenant {v.tenant})" if v.tenant else ""
        kind = "deep: image bytes hashed" if v.deep else "fields and records"
        verdict = (f'<span class="{"ok" if v.outcome == "match" else "bad"}">'
                   f"{esc(v.outcome)}</span> at {esc(_time(v.finished_at))}{esc(scope)}, "
                   f"{esc(kind)}, by {esc(v.actor)}")
    duration = "-"
    if run.started_at and run.finished_at:
        duration = human_duration((run.finished_at - run.started_at).total_seconds())
    rows = [
        ("Run", esc(run.name) + (" (dry run)" if run.dry_run else "")),
        ("Status", f'<span class="{"ok" if run.status == "finished" else "bad"}">'
                   f"{esc(run.status)}</span>"),
        ("Plan file", esc(run.plan_file or "-")),
        ("Registered", esc(_time(run.created_at))),
        ("Last execution", f"{esc(_time(run.started_at))} to {esc(_time(run.finished_at))} "
                           f"({esc(duration)})"),
        ("Steps", f"{r.total} {_state_pills(r.steps)}"),
        ("Tenants", str(len(r.tenants))),
        ("Data", f"{esc(human_bytes(r.bytes_moved))} moved, "
                 f"{esc(human_bytes(r.bytes_left))} left"),
        ("Failures", f"{r.failed_steps} step(s) failed for good; {r.error_count} error(s) "
                     "met on the way (retried or not)"),
        ("Verification", verdict),
    ]
    out.write('<section id="summary"><h2>Summary</h2><dl>\n')
    for label, value in rows:
        out.write(f"<dt>{esc(label)}</dt><dd>{value}</dd>\n")
    out.write("</dl></section>\n")


def _kind_pill(kind: str, counts: dict[str, int]) -> str:
    """``network 2`` coloured by its state when all its steps share one, else the states."""
    if len(counts) == 1:
        state, n = next(iter(counts.items()))
        return (f'<span class="pill {STATE_CLASS.get(state, "wait")}" title="{esc(state)}">'
                f"{esc(kind)} {n}</span>")
    parts = ", ".join(f"{n} {esc(s)}" for s, n in counts.items())
    worst = next((STATE_CLASS[s] for s in ("failed", "blocked", "running", "verifying",
                                           "pending") if s in counts), "wait")
    return f'<span class="pill {worst}">{esc(kind)}: {parts}</span>'


def _verdict_cell(t: TenantReport) -> str:
    v = t.verification
    if v.result == "not verified":
        return '<span class="muted">not verified</span>'
    if v.result == "match":
        text = f'<span class="ok">match</span> ({v.counts.get("match", 0)} checked)'
    else:
        parts = [f"{v.counts.get(k, 0)} {k}" for k in ("differs", "missing", "error")
                 if v.counts.get(k)]
        text = f'<span class="bad">{esc(", ".join(parts))}</span>'
    if v.drift:
        text += f' <span class="pill busy">drift {v.drift}</span>'
    return text


def _tenants(out: TextIO, r: RunReport) -> None:
    states = order_states({s for t in r.tenants for s in t.steps})
    out.write('<section id="tenants"><h2>Tenants</h2>\n<table id="tenant-table">\n<thead><tr>'
              "<th>Tenant</th><th class=\"n\">Steps</th>"
              + "".join(f'<th class="n">{esc(s)}</th>' for s in states)
              + "<th>Resources by kind</th><th class=\"n\">Moved</th><th class=\"n\">Left"
                "</th><th>Ran</th><th>Verification</th></tr></thead>\n<tbody>\n")
    for t in r.tenants:
        kinds = " ".join(_kind_pill(kind, counts) for kind, counts in t.kinds.items())
        ran = "-"
        if t.first_event is not None:
            ran = (f"{esc(_time(t.first_event))}<br><span class=\"muted\">"
                   f"{esc(human_duration(t.seconds or 0))}</span>")
        out.write(f'<tr class="tenant"><td>{esc(t.tenant or "-")}</td>'
                  f'<td class="n">{t.total}</td>'
                  + "".join(f'<td class="n {STATE_CLASS.get(s, "wait") if t.steps.get(s) else ""}'
                            f'">{t.steps.get(s, 0)}</td>' for s in states)
                  + f"<td>{kinds}</td><td class=\"n\">{esc(human_bytes(t.bytes_moved))}</td>"
                    f"<td class=\"n\">{esc(human_bytes(t.bytes_left))}</td><td>{ran}</td>"
                    f"<td>{_verdict_cell(t)}</td></tr>\n")
    out.write("</tbody></table></section>\n")


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{value:.0f} s ({human_duration(value)})"


def _servers(out: TextIO, r: RunReport) -> None:
    """Per tenant the servers cut over with their downtime (total and worst), then each
    server's window; nothing when the run moved no server."""
    moved = [t for t in r.tenants if t.servers is not None]
    if not moved:
        return
    out.write('<section id="servers"><h2>Servers cut over: measured downtime</h2>\n'
              '<p class="muted">Downtime: from the source server stopped to the target '
              "server running (or left stopped, as the source was) and verified.</p>\n"
              '<table id="server-tenants"><thead><tr><th>Tenant</th>'
              '<th class="n">Servers</th><th class="n">Total downtime</th>'
              '<th class="n">Worst downtime</th></tr></thead><tbody>\n')
    for t in moved:
        assert t.servers is not None
        out.write(f'<tr><td>{esc(t.tenant or "-")}</td><td class="n">{t.servers.moved}</td>'
                  f'<td class="n">{esc(_seconds(t.servers.total_seconds))}</td>'
                  f'<td class="n">{esc(_seconds(t.servers.worst_seconds))}</td></tr>\n')
    out.write('</tbody></table>\n<table id="server-windows"><thead><tr><th>Tenant</th>'
              "<th>Server</th><th>Source id</th><th>Target id</th><th>Was</th>"
              '<th>Stopped</th><th class="n">Downtime</th><th class="n">Copy</th>'
              '<th class="n">Bytes</th></tr></thead><tbody>\n')
    for t in moved:
        assert t.servers is not None
        for w in t.servers.windows:
            out.write(f'<tr><td>{esc(w.tenant or "-")}</td><td>{esc(w.name or "-")}</td>'
                      f'<td class="id">{esc(w.source_id)}</td>'
                      f'<td class="id">{esc(w.target_id)}</td><td>{esc(w.power_state)}</td>'
                      f"<td>{esc(_time(w.stopped_at))}</td>"
                      f'<td class="n">{esc(_seconds(w.downtime_seconds))}</td>'
                      f'<td class="n">{esc(_seconds(w.copy_seconds))}</td>'
                      f'<td class="n">{esc(human_bytes(w.bytes))}</td></tr>\n')
    out.write("</tbody></table></section>\n")


def _verification(out: TextIO, r: RunReport) -> None:
    findings = [(t.tenant, f) for t in r.tenants for f in t.verification.findings]
    if not findings:
        return
    out.write('<section id="verification"><h2>Verification findings</h2>\n<table>'
              "<thead><tr><th>Tenant</th><th>Kind</th><th>Name</th><th>Result</th>"
              "<th>Detail</th></tr></thead><tbody>\n")
    for tenant, f in findings:
        css = "busy" if str(f.get("result", "")).startswith("drift-") else "bad"
        out.write(f"<tr><td>{esc(tenant or '-')}</td><td>{esc(f.get('kind'))}</td>"
                  f"<td>{esc(f.get('name') or f.get('source_id'))}</td>"
                  f'<td class="{css}">{esc(f.get("result"))}</td>'
                  f"<td>{esc(f.get('detail'))}</td></tr>\n")
    out.write("</tbody></table></section>\n")


def _failures(out: TextIO, r: RunReport) -> None:
    out.write('<section id="failures"><h2>Failures</h2>\n')
    if not r.errors:
        out.write('<p class="muted">No step failed, not even once.</p></section>\n')
        return
    shown = f" (the first {len(r.errors)} of {r.error_count})" \
        if r.error_count > len(r.errors) else ""
    out.write(f"<p>{r.error_count} failure(s) met{esc(shown)}; {r.failed_steps} step(s) "
              "failed for good (the others succeeded on a later attempt).</p>\n<table>"
              "<thead><tr><th>Time</th><th>Tenant</th><th>Kind</th><th>Name</th>"
              '<th class="n">Attempt</th><th>Error</th></tr></thead><tbody>\n')
    for e in r.errors:
        final = ' <span class="pill bad">final</span>' if e.final else ""
        out.write(f"<tr><td>{esc(_time(e.at))}</td><td>{esc(e.tenant or '-')}</td>"
                  f"<td>{esc(e.kind)}</td><td>{esc(e.name or '-')}</td>"
                  f'<td class="n">{esc(e.attempt if e.attempt is not None else "-")}</td>'
                  f'<td class="bad">{esc(e.error)}{final}</td></tr>\n')
    out.write("</tbody></table></section>\n")


def _timeline(out: TextIO, r: RunReport) -> None:
    tl = r.timeline
    out.write('<section id="timeline"><h2>Timeline</h2>\n')
    if tl.first_completion is not None and tl.last_completion is not None:
        peak = max(tl.completions) or 1
        span = (tl.last_completion - tl.first_completion).total_seconds()
        out.write(f"<p>Steps completed over {esc(human_duration(span))} "
                  f"({sum(tl.completions)} in all, at most {peak} per "
                  f"{esc(_span(span / len(tl.completions)))}):</p>"
                  '<div class="bars">')
        for n in tl.completions:
            out.write(f'<div style="height:{round(100 * n / peak)}%" title="{n}"></div>')
        out.write(f'</div><div class="axis"><span>{esc(_time(tl.first_completion))}</span>'
                  f"<span>{esc(_time(tl.last_completion))}</span></div>\n")
    out.write("<table><thead><tr><th>Time</th><th>Run</th><th>By</th><th>Detail</th></tr>"
              "</thead><tbody>\n")
    for e in tl.events:
        change = f"{esc(e.from_state)} &rarr; {esc(e.to_state)}" if e.from_state else \
            esc(e.to_state)
        detail = "; ".join(f"{k}: " + (", ".join(f"{a} {b}" for a, b in v.items())
                                        if isinstance(v, dict) else str(v))
                           for k, v in e.detail.items())
        out.write(f"<tr><td>{esc(_time(e.at))}</td><td>{change}</td>"
                  f"<td>{esc(e.actor)} (pid {e.pid})</td><td>{esc(detail)}</td></tr>\n")
    out.write("</tbody></table></section>\n")


def _span(seconds: float) -> str:
    return f"{seconds:.2f}s" if seconds < 10 else human_duration(seconds)


def _id_map(out: TextIO, r: RunReport) -> None:
    out.write('<section id="id-map"><h2>Source &rarr; target, per tenant</h2>\n')
    current: object = object()
    opened = False
    for row in r.id_map():
        if row.tenant != current:
            if opened:
                out.write("</tbody></table></details>\n")
            current = row.tenant
            opened = True
            out.write(f'<details><summary>{esc(row.tenant or "cloud-wide")}</summary>'
                      "<table><thead><tr><th>Kind</th><th>Name</th><th>Source id</th>"
                      '<th>Target id</th><th>State</th><th class="n">Bytes</th>'
                      "<th>md5 / sha512</th><th>Completed</th></tr></thead><tbody>\n")
        out.write(_id_row(row))
    if opened:
        out.write("</tbody></table></details>\n")
    else:
        out.write('<p class="muted">No steps.</p>\n')
    out.write("</section>\n")


def _id_row(row: IdMapRow) -> str:
    sums = " ".join(x for x in (row.data.md5, row.data.sha512) if x)
    return (f"<tr><td>{esc(row.kind)}</td><td>{esc(row.name or '-')}</td>"
            f'<td class="id">{esc(row.source_id or "-")}</td>'
            f'<td class="id">{esc(row.target_id or "-")}</td>'
            f'<td class="{STATE_CLASS.get(row.state, "wait")}">{esc(row.state)}</td>'
            f'<td class="n">{esc(row.data.bytes if row.data.bytes is not None else "-")}</td>'
            f'<td class="id">{esc(sums or "-")}</td><td>{esc(_time(row.completed_at))}</td>'
            "</tr>\n")

