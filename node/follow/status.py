"""The follower's health, as `ncii-node status` and `GET /status` show it.

One JSON object: `logs` holds one object per followed log (at least `origin`, `size`
and `forked`), `fingerprints` the counts over all logs. Lag is given two ways:
`lag_entries` (entries the peer announced beyond what we verified) and
`lag_seconds` (time since a round last confirmed we held the peer's latest checkpoint).
"""

from __future__ import annotations

import datetime
import time

from node.store import follow as store


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def status_report(db, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    counts = store.fingerprint_counts(db)
    logs = []
    for entry in store.list_logs(db):
        c = counts.get(entry.origin, {"active": 0, "withdrawn": 0, "suppressed": 0})
        logs.append({
            "origin": entry.origin,
            "name": entry.name,
            "url": entry.url,
            "vkey": entry.vkey,
            "tofu": entry.tofu,
            "size": entry.size,
            "forked": entry.forked,
            "fork_reason": entry.fork_reason,
            "last_verified_at": _iso(entry.verified_at),
            "remote_size": entry.remote_size,
            "lag_entries": None if entry.remote_size is None else max(0, entry.remote_size - entry.size),
            "lag_seconds": None if entry.in_sync_at is None else round(max(0.0, now - entry.in_sync_at), 3),
            "last_error": entry.last_error,
            "last_error_at": _iso(entry.last_error_at),
            "failures": entry.failures,
            "display_name": entry.display_name,
            "fingerprints": c,
        })
    total = {"active": 0, "withdrawn": 0, "suppressed": 0}
    for c in counts.values():
        for key in total:
            total[key] += c[key]
    return {
        "logs": logs,
        "fingerprints": total,
        "forked_logs": [entry["origin"] for entry in logs if entry["forked"]],
        "generated_at": _iso(now),
    }


def format_report(report: dict) -> str:
    """The report for people: one block per log, forks impossible to miss."""
    lines = []
    for origin in report["forked_logs"]:
        lines.append(f"!!! FORK: log {origin} signed two inconsistent checkpoints; nothing more is applied from it.")
    if report["forked_logs"]:
        lines.append("")
    if not report["logs"]:
        lines.append("following no logs (ncii-node follow add --dir DIR URL --vkey VKEY)")
    for entry in report["logs"]:
        name = f" ({entry['name']})" if entry["name"] else ""
        state = "FORKED" if entry["forked"] else "failing" if entry["failures"] else "ok"
        lines.append(f"{entry['origin']}{name}  [{state}]")
        lines.append(f"  url            {entry['url']}")
        lines.append(f"  size           {entry['size']} verified"
                     + (f", {entry['lag_entries']} behind" if entry["lag_entries"] else ""))
        lines.append(f"  last verified  {entry['last_verified_at'] or 'never'}"
                     + (f" (in sync {entry['lag_seconds']} s ago)" if entry["lag_seconds"] is not None else ""))
        fp = entry["fingerprints"]
        lines.append(f"  fingerprints   {fp['active']} active, {fp['withdrawn']} withdrawn, "
                     f"{fp['suppressed']} suppressed")
        if entry["forked"]:
            lines.append(f"  FORK           {entry['fork_reason']}")
        if entry["last_error"]:
            lines.append(f"  last error     {entry['last_error']} ({entry['last_error_at']}, "
                         f"{entry['failures']} failure(s) in a row)")
    total = report["fingerprints"]
    lines.append("")
    lines.append(f"fingerprints: {total['active']} active, {total['withdrawn']} withdrawn, "
                 f"{total['suppressed']} suppressed")
    return "\n".join(lines)
