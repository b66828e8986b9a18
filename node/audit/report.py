"""The audit report: a JSON object, a text summary, and a self-contained HTML page.

The HTML page holds everything inline (styles, an SVG chart, no script, no external
resource), so a person can open it from disk, mail it or archive it. The chart shows
submissions per day (the coarse `day` of each submission; undated ones are counted
apart) with the part later withdrawn drawn on top. Entries carry no finer time, on
purpose (spec/parts/entries.md): the log must not tell when a person asked for help.
"""

from __future__ import annotations

import base64
import datetime
import html

from node.audit.check import AuditResult

EPOCH = datetime.date(1970, 1, 1)


def _day(day: int) -> str:
    return (EPOCH + datetime.timedelta(days=day)).isoformat()


def to_json(result: AuditResult, *, url: str = "", consistency: dict | None = None,
            evidence_files: list[str] = (), html_path: str | None = None,
            peers: list[dict] = (), witnesses: dict | None = None, acknowledgements: dict | None = None) -> dict:
    dated = {_day(d): n for d, n in sorted(result.submissions_by_day.items()) if d}
    return {
        "ok": result.ok,
        "url": url,
        "origin": result.origin,
        "size": result.size,
        "root_hash": base64.b64encode(result.root_hash).decode() if result.root_hash else None,
        "signed_by": result.signed_by or None,
        "violations": [v.to_json() for v in result.violations],
        "warnings": [v.to_json() for v in result.warnings],
        "counts": {"by_kind": dict(sorted(result.kinds.items())),
                   "by_signal": dict(sorted(result.signals.items())),
                   "verdicts": dict(sorted(result.verdicts.items())),
                   "feedback_about_other_logs": dict(sorted(result.external_feedback.items())),
                   "acknowledgements": dict(sorted(result.acknowledgements.items()))},
        "withdrawn_submissions": len(result.withdrawn),
        "withdrawal_rate": round(result.withdrawal_rate, 6),
        "submissions_per_day": dated,
        "undated_submissions": result.submissions_by_day.get(0, 0),
        "key_rotations": result.rotations,
        "consistency": consistency or {},
        "peers": list(peers),
        "witnesses": witnesses,
        "acknowledgements": acknowledgements,
        "evidence_files": list(evidence_files),
        "html_report": html_path,
    }


def to_text(report: dict) -> str:
    lines = [f"log {report['origin']} at {report['url']}",
             f"checkpoint: size {report['size']}, root {report['root_hash']}, signed by {report['signed_by']}"]
    if not report["signed_by"]:
        lines.append("WARNING: the checkpoint is not validly signed by the key you gave: nothing below is "
                     "authenticated; the counts describe whatever the server sent")
    counts = report["counts"]
    lines.append("entries: " + (", ".join(f"{n} {k}" for k, n in counts["by_kind"].items()) or "none"))
    if counts["by_signal"]:
        lines.append("submissions by signal: " + ", ".join(f"{n} {k}" for k, n in counts["by_signal"].items()))
    lines.append(f"withdrawn submissions: {report['withdrawn_submissions']} "
                 f"({100 * report['withdrawal_rate']:.1f} %)")
    if counts["verdicts"]:
        lines.append("feedback verdicts: " + ", ".join(f"{n} {k}" for k, n in counts["verdicts"].items()))
    consistency = report["consistency"]
    if consistency:
        lines.append(f"since the last audit: {consistency.get('status')} "
                     f"({consistency.get('message', '')})".rstrip(" ()"))
    for peer in report["peers"]:
        lines.append(f"peer {peer['url']}: {peer['status']}")
    witnesses = report.get("witnesses")
    if witnesses:
        cosigned = ", ".join(f"{name} at {at}" for name, at in witnesses["cosigned"].items())
        lines.append(f"witnesses: policy needs {witnesses['required']}: "
                     + (f"met ({cosigned or 'no cosignature needed'})" if witnesses["met"]
                        else f"NOT met ({witnesses.get('problem', '')})"))
    for w in report["warnings"]:
        lines.append(f"warning [{w['kind']}]: {w['message']}")
    for v in report["violations"]:
        lines.append(f"VIOLATION [{v['kind']}]: {v['message']}")
    lines += _acks_text(report.get("acknowledgements"))
    for path in report["evidence_files"]:
        lines.append(f"evidence written to {path} (check it: ncii-node audit verify-evidence {path})")
    if report["html_report"]:
        lines.append(f"report with chart: {report['html_report']}")
    platform_violations = sum(len(p["violations"]) for p in (report.get("acknowledgements") or {}).get("platforms", []))
    lines.append("result: " + ("OK, no violation" if report["ok"] else f"{len(report['violations'])} violation(s)"
                               + (f", {platform_violations} in the platforms' logs" if platform_violations else "")))
    return "\n".join(lines) + "\n"


def _latency_text(summary: dict) -> str:
    if not summary.get("acknowledged"):
        text = "none acknowledged"
    else:
        text = (f"{summary['acknowledged']} acknowledged: p50 {summary['p50']} s, p99 {summary['p99']} s, "
                f"max {summary['max']} s")
    if summary.get("pending"):
        text += f"; {summary['pending']} pending since {summary.get('pending_since')}"
    if summary.get("publication_unknown"):
        text += f"; {summary['publication_unknown']} without a known publication time"
    return text


def _acks_text(acks: dict | None) -> list[str]:
    if not acks:
        return []
    lines = [f"acknowledgements of {acks['helpline']} (publication times checked with "
             f"{acks['acknowledgement_key'] or 'NO KEY: unknown'}):"]
    for p in acks["platforms"]:
        lines.append(f"  platform {p['origin']} at {p['url']}: {'ok' if p['ok'] else 'VIOLATIONS'}, "
                     f"{p['acknowledgements']} acknowledgement(s) up to size {p['acknowledged_size']}")
        lines.append(f"    submissions: {_latency_text(p['submissions'])}")
        lines.append(f"    withdrawals: {_latency_text(p['withdrawals'])}")
        if p["unacknowledged_withdrawals"]:
            lines.append("    NOT acknowledged withdrawals: " + ", ".join(
                f"{w['index']}" + (f" (published {w['published']})" if w["published"] else "")
                for w in p["unacknowledged_withdrawals"]))
        for v in p["violations"]:
            lines.append(f"    VIOLATION [{v['kind']}]: {v['message']}")
    return lines


def _chart(result: AuditResult) -> str:
    """An SVG bar chart of submissions per day, withdrawn part on top, every day of the
    range shown (days without submissions are gaps, not omitted)."""
    days = sorted(d for d in result.submissions_by_day if d)
    if not days:
        return "<p>No dated submissions to chart.</p>"
    first, last = days[0], days[-1]
    span = last - first + 1
    width, height, left, bottom, top = 760, 260, 48, 40, 16
    plot_w, plot_h = width - left - 12, height - bottom - top
    peak = max(result.submissions_by_day[d] for d in days)
    bar = plot_w / span
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Submissions per day">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>']
    for offset in range(span):
        day = first + offset
        total = result.submissions_by_day.get(day, 0)
        if not total:
            continue
        withdrawn = min(total, result.withdrawn_by_day.get(day, 0))
        x = left + offset * bar
        h = plot_h * total / peak
        hw = plot_h * withdrawn / peak
        w = max(bar - 1, 1)
        label = html.escape(f"{_day(day)}: {total} submitted, {withdrawn} withdrawn")
        parts.append(f'<g><title>{label}</title>'
                     f'<rect x="{x:.2f}" y="{top + plot_h - h:.2f}" width="{w:.2f}" height="{h:.2f}" fill="#4a78b5"/>'
                     + (f'<rect x="{x:.2f}" y="{top + plot_h - h:.2f}" width="{w:.2f}" height="{hw:.2f}" '
                        f'fill="#d9822b"/>' if withdrawn else "") + "</g>")
    for day, anchor in ((first, "start"), (last, "end")):
        x = left if anchor == "start" else left + plot_w
        parts.append(f'<text x="{x}" y="{top + plot_h + 18}" text-anchor="{anchor}" font-size="11">{_day(day)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _acks_html(acks: dict | None) -> str:
    if not acks:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td><code>{esc(p['origin'])}</code></td><td>{esc(_latency_text(p['submissions']))}</td>"
        f"<td>{esc(_latency_text(p['withdrawals']))}</td>"
        f"<td>{esc(', '.join(str(w['index']) for w in p['unacknowledged_withdrawals']) or 'none')}</td>"
        f"<td>{'ok' if p['ok'] else '<b class=bad>violations</b>'}</td></tr>" for p in acks["platforms"])
    return (f"<h2>Acknowledgements</h2><p>Time from the helpline's publication to each platform's "
            f"acknowledgement, from the logs alone. {esc(acks['bound'])}.</p>"
            "<table><tr><th>platform</th><th>submissions</th><th>withdrawals</th><th>withdrawals not acknowledged"
            f"</th><th>checks</th></tr>{rows}</table>")


def to_html(report: dict, result: AuditResult) -> str:
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{n}</td></tr>" for k, n in report["counts"]["by_kind"].items())
    signals = "".join(f"<tr><td>{esc(k)}</td><td>{n}</td></tr>" for k, n in report["counts"]["by_signal"].items())
    problems = "".join(f"<li><b>{esc(v['kind'])}</b>: {esc(v['message'])}</li>" for v in report["violations"])
    warnings = "".join(f"<li>{esc(v['kind'])}: {esc(v['message'])}</li>" for v in report["warnings"])
    verdict = ("<p class=ok>No violation found.</p>" if report["ok"]
               else f"<p class=bad>{len(report['violations'])} violation(s):</p><ul>{problems}</ul>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Audit of {esc(report['origin'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 820px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.7em; text-align: left; }}
.ok {{ color: #17702e; font-weight: bold; }} .bad {{ color: #b00020; font-weight: bold; }}
.key span {{ display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 1em; }}
code {{ word-break: break-all; }}
</style></head><body>
<h1>Audit of <code>{esc(report['origin'])}</code></h1>
<p>Log at <code>{esc(report['url'])}</code>; checkpoint of size {report['size']}, root
<code>{esc(report['root_hash'] or '')}</code>, signed by <code>{esc(report['signed_by'] or 'nobody valid')}</code>.</p>
{verdict}
<h2>Entries</h2>
<table><tr><th>kind</th><th>count</th></tr>{rows}</table>
<table><tr><th>signal</th><th>submissions</th></tr>{signals}</table>
<p>Withdrawn submissions: {report['withdrawn_submissions']} ({100 * report['withdrawal_rate']:.1f} %).
Undated submissions: {report['undated_submissions']}.</p>
<h2>Submissions per day</h2>
<p class="key"><span style="background:#4a78b5"></span>submitted<span style="background:#d9822b"></span>later withdrawn</p>
{_chart(result)}
{_acks_html(report.get("acknowledgements"))}
{'<h2>Warnings</h2><ul>' + warnings + '</ul>' if warnings else ''}
</body></html>
"""
