"""The follower's health, as `ncii-node status` and `GET /status` show it.

One JSON object: `logs` holds one object per followed log (at least `origin`, `size`
and `forked`), `fingerprints` the counts over all logs. Lag is given two ways:
`lag_entries` (entries the peer announced beyond what we verified) and
`lag_seconds` (time since a round last confirmed we held the peer's latest checkpoint).
A forked log also names its evidence file (`fork_evidence`) or why there is none
(`fork_evidence_problem`); `gossip` lists the peers whose views are compared with ours.
On a platform, `held` counts a log's fingerprints verified and stored but held out of
the match index (a dense `cluster` it published, or beyond its `budget`), and
`held_clusters` lists the clusters waiting for the operator (node/matcher/holds.py).
"""

from __future__ import annotations

import datetime
import time

from node.store import follow as store
from node.store import matching as matching_store


def iso_time(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def status_report(db, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    counts = store.fingerprint_counts(db)
    forks = store.latest_forks(db)
    held = matching_store.hold_counts(db)
    clusters = [c for c in matching_store.clusters(db) if c.held]
    budgets = matching_store.budgets(db)
    logs = []
    for entry in store.list_logs(db):
        c = counts.get(entry.origin, {"active": 0, "withdrawn": 0, "suppressed": 0})
        fork = forks.get(entry.origin) if entry.forked else None
        logs.append({
            "origin": entry.origin,
            "name": entry.name,
            "url": entry.url,
            "vkey": entry.vkey,
            "tofu": entry.tofu,
            "size": entry.size,
            "forked": entry.forked,
            "fork_reason": entry.fork_reason,
            "fork_source": fork.source if fork else None,
            "fork_evidence": fork.evidence_path if fork else None,
            "fork_evidence_problem": fork.evidence_problem if fork else None,
            "last_verified_at": iso_time(entry.verified_at),
            "remote_size": entry.remote_size,
            "lag_entries": None if entry.remote_size is None else max(0, entry.remote_size - entry.size),
            "lag_seconds": None if entry.in_sync_at is None else round(max(0.0, now - entry.in_sync_at), 3),
            "last_error": entry.last_error,
            "last_error_at": iso_time(entry.last_error_at),
            "failures": entry.failures,
            "display_name": entry.display_name,
            "fingerprints": c,
            "held": held.get(entry.origin, {"cluster": 0, "budget": 0}),
            "held_clusters": [_cluster_json(k) for k in clusters if k.origin == entry.origin],
            "budget": budgets.get(entry.origin, {}),
        })
    total = {"active": 0, "withdrawn": 0, "suppressed": 0}
    for c in counts.values():
        for key in total:
            total[key] += c[key]
    return {
        "logs": logs,
        "fingerprints": total,
        "forked_logs": [entry["origin"] for entry in logs if entry["forked"]],
        "held_clusters": [{"origin": k.origin, **_cluster_json(k)} for k in clusters],
        "gossip": [{"url": p.url, "interval": p.interval, "checked_at": iso_time(p.checked_at),
                    "last_error": p.last_error, "last_error_at": iso_time(p.last_error_at), "failures": p.failures}
                   for p in store.list_gossip_peers(db)],
        "generated_at": iso_time(now),
    }


def _cluster_json(cluster) -> dict:
    return {"id": cluster.id, "members": cluster.members, "radius": cluster.radius,
            "centre": cluster.centre.hex(), "detected_at": iso_time(cluster.detected_at)}


def format_report(report: dict) -> str:
    """The report for people: one block per log, forks and held clusters impossible to miss."""
    lines = []
    evidence = {entry["origin"]: entry.get("fork_evidence") for entry in report["logs"]}
    for origin in report["forked_logs"]:
        lines.append(f"!!! FORK: log {origin} signed two inconsistent checkpoints; nothing more is applied from it."
                     + (f" Evidence: {evidence[origin]}" if evidence.get(origin) else ""))
    for cluster in report.get("held_clusters", []):
        lines.append(f"!!! HELD CLUSTER {cluster['id']}: log {cluster['origin']} published {cluster['members']:,} "
                     f"fingerprints within {2 * cluster['radius']} bits of one another ({cluster['detected_at']}); "
                     "they are stored but not matched until you release them: "
                     f"ncii-node match-release --dir DIR {cluster['id']}")
    if report["forked_logs"] or report.get("held_clusters"):
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
        lines.append(f"  last verified  {entry['last_verified_at'] or 'no checkpoint yet'}"
                     + (f" (up to date with the log as of {entry['lag_seconds']} s ago)"
                        if entry["lag_seconds"] is not None else ""))
        fp = entry["fingerprints"]
        lines.append(f"  fingerprints   {fp['active']} active, {fp['withdrawn']} withdrawn, "
                     f"{fp['suppressed']} suppressed")
        held = entry.get("held", {})
        if held.get("cluster") or held.get("budget"):
            lines.append(f"  HELD           {held['cluster']} in held clusters, {held['budget']} beyond the log's "
                         "budgets (stored, not matched; ncii-node match-budget)")
        if entry["forked"]:
            lines.append(f"  FORK           {entry['fork_reason']}")
            if entry.get("fork_evidence"):
                lines.append(f"  evidence       {entry['fork_evidence']}")
                lines.append("                 (anyone can check it: ncii-node audit verify-evidence FILE)")
            elif entry.get("fork_evidence_problem"):
                lines.append(f"  evidence       NONE: {entry['fork_evidence_problem']}")
        if entry["last_error"]:
            lines.append(f"  last error     {entry['last_error']} ({entry['last_error_at']}, "
                         f"{entry['failures']} failure(s) in a row)")
    for peer in report.get("gossip", []):
        checked = peer["checked_at"] or "never"
        problem = f"; last problem: {peer['last_error']}" if peer["last_error"] else ""
        lines.append(f"gossip peer {peer['url']}  compared {checked}{problem}")
    total = report["fingerprints"]
    lines.append("")
    lines.append(f"fingerprints: {total['active']} active, {total['withdrawn']} withdrawn, "
                 f"{total['suppressed']} suppressed")
    return "\n".join(lines)
