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
Given the node's own origin, each followed log also says how fast it acknowledged this
node's submissions and withdrawals (`acknowledgements`, node/acks/report.py).

Each log has one `state`: "forked", "failing" (its last round failed) or "ok";
`exit_status` turns the report into the exit status of `ncii-node status` (EXIT_*),
which monitoring reads. A `last_error` of a log whose rounds have succeeded since is
an earlier error, and is shown as one.
"""

from __future__ import annotations

import datetime
import time

from node.acks.report import acknowledgement_statistics

EXIT_OK = 0          # every followed log and gossip peer is well, and a node serves this directory
EXIT_FORKED = 3      # a followed log forked (evidence kept): a person must look
EXIT_FAILING = 4     # a followed log's (or a gossip peer's) last round failed
EXIT_NOT_SERVING = 5  # no `ncii-node serve` runs for this data directory

EXIT_STATUS_HELP = """\
exit status (for monitoring; the first that applies):
  3  a followed log FORKED (two inconsistent signed checkpoints; evidence kept), or the
     federation list's log
  4  a followed log, or a gossip peer, is failing (its last round failed)
  5  no `ncii-node serve` is running for this data directory
  1  the data directory cannot be read
  0  all well"""


def iso_time(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def log_state(entry) -> str:
    return "forked" if entry.forked else "failing" if entry.failures else "ok"


def status_report(db, now: float | None = None, *, fingerprints: bool = True, own_origin: str | None = None) -> dict:
    """The report; without `fingerprints`, no counts of fingerprints (they read the
    whole fingerprint table: the console and /metrics go without them); with
    `own_origin`, the acknowledgement statistics of this node's own entries."""
    now = time.time() if now is None else now
    acks = _acknowledgements(db, own_origin, now)
    counts = db.follow.fingerprint_counts() if fingerprints else {}
    forks = db.follow.latest_forks()
    held = db.matching.hold_counts()
    clusters = [c for c in db.matching.clusters() if c.held]
    budgets = db.matching.budgets()
    errors = db.stats.follow_errors()
    dropped = db.peer_feedback.dropped()
    logs = []
    for entry in db.follow.list_logs():
        c = counts.get(entry.origin, {"active": 0, "withdrawn": 0, "suppressed": 0}) if fingerprints else None
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
            "errors_total": errors.get(entry.origin, 0),
            "state": log_state(entry),
            "display_name": entry.display_name,
            "feedback_dropped": dropped.get(entry.origin, 0),
            "fingerprints": c,
            "held": held.get(entry.origin, {"cluster": 0, "budget": 0}),
            "held_clusters": [_cluster_json(k) for k in clusters if k.origin == entry.origin],
            "budget": budgets.get(entry.origin, {}),
            "acknowledgements": acks.get(entry.origin),
        })
    total = {"active": 0, "withdrawn": 0, "suppressed": 0}
    for c in counts.values():
        for key in total:
            total[key] += c[key]
    return {
        "logs": logs,
        "fingerprints": total if fingerprints else None,
        "forked_logs": [entry["origin"] for entry in logs if entry["forked"]],
        "held_clusters": [{"origin": k.origin, **_cluster_json(k)} for k in clusters],
        "failing_logs": [entry["origin"] for entry in logs if entry["state"] == "failing"],
        "gossip": [{"url": p.url, "interval": p.interval, "checked_at": iso_time(p.checked_at),
                    "last_error": p.last_error, "last_error_at": iso_time(p.last_error_at), "failures": p.failures}
                   for p in db.follow.list_gossip_peers()],
        "generated_at": iso_time(now),
    }


def _cluster_json(cluster) -> dict:
    return {"id": cluster.id, "members": cluster.members, "radius": cluster.radius,
            "centre": cluster.centre.hex(), "detected_at": iso_time(cluster.detected_at)}


def _acknowledgements(db, own_origin: str | None, now: float) -> dict:
    """Per followed log, its acknowledgement statistics of this node's own entries
    (only for a node that published submissions or withdrawals)."""
    if own_origin is None:
        return {}
    stats = acknowledgement_statistics(db, own_origin, now)
    if not any(stats["entries"].values()):
        return {}
    return {p["origin"]: p for p in stats["platforms"]}


def _latency(summary: dict) -> str:
    text = (f"p50 {summary['p50']} s, p99 {summary['p99']} s ({summary['acknowledged']} acknowledged"
            if summary.get("acknowledged") else "(none acknowledged")
    if summary.get("pending"):
        text += f", {summary['pending']} pending for up to {summary.get('oldest_pending_seconds')} s"
    return text + ")"


def format_report(report: dict) -> str:
    """The report for people: forks and held clusters first (impossible to miss), this
    node (when the report has `node`), then one block per log."""
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
    if report.get("node"):
        lines += [_node_line(report["node"]), ""]
    if not report["logs"]:
        lines.append("following no logs (ncii-node follow add --dir DIR URL --vkey VKEY)")
    for entry in report["logs"]:
        name = f" ({entry['name']})" if entry["name"] else ""
        state = "FORKED" if entry["state"] == "forked" else entry["state"]
        lines.append(f"{entry['origin']}{name}  [{state}]")
        lines.append(f"  url            {entry['url']}")
        lines.append(f"  size           {entry['size']} verified"
                     + (f", {entry['lag_entries']} behind the log's latest checkpoint" if entry["lag_entries"] else ""))
        lines.append(f"  last verified  {entry['last_verified_at'] or 'no checkpoint yet'}" + _sync_note(entry))
        fp = entry["fingerprints"]
        if fp is not None:
            lines.append(f"  fingerprints   {fp['active']} active, {fp['withdrawn']} withdrawn, "
                         f"{fp['suppressed']} suppressed")
        held = entry.get("held", {})
        if held.get("cluster") or held.get("budget"):
            lines.append(f"  HELD           {held['cluster']} in held clusters, {held['budget']} beyond the log's "
                         "budgets (stored, not matched; ncii-node match-budget)")
        if entry.get("feedback_dropped"):
            lines.append(f"  feedback       {entry['feedback_dropped']} entries about no entry held here: counted, "
                         "not stored")
        if entry.get("display_name") and entry["display_name"] != entry["name"]:
            lines.append(f"  announces      the name {entry['display_name']!r} (not shown to people unless "
                         "approved: ncii-node follow name --from-announcement)")
        if entry["forked"]:
            lines.append(f"  FORK           {entry['fork_reason']}")
            if entry.get("fork_evidence"):
                lines.append(f"  evidence       {entry['fork_evidence']}")
                lines.append("                 (anyone can check it: ncii-node audit verify-evidence FILE)")
            elif entry.get("fork_evidence_problem"):
                lines.append(f"  evidence       NONE: {entry['fork_evidence_problem']}")
        acks = entry.get("acknowledgements")
        if acks:
            state = {"late": "LATE: something waits for more than a minute",
                     "silent": "SILENT: it never acknowledged anything", "forked": "forked"}.get(acks["state"], "ok")
            lines.append(f"  acknowledged   this log up to size {acks['acknowledged_size']}, last at "
                         f"{acks['last_acknowledgement'] or 'never'} [{state}]")
            lines.append(f"    submissions  {_latency(acks['submissions'])}, over the last 7 days")
            lines.append(f"    withdrawals  {_latency(acks['withdrawals'])}")
            if acks["false_acknowledgements"]:
                lines.append(f"    !!! {acks['false_acknowledgements']} acknowledgement(s) of a tree this log never "
                             "had (audit with --platform writes the evidence)")
        if entry["last_error"] and entry["failures"]:
            lines.append(f"  last error     {entry['last_error']} ({entry['last_error_at']}, "
                         f"{entry['failures']} failure(s) in a row)")
        elif entry["last_error"] and not entry["forked"]:
            lines.append(f"  earlier error  {entry['last_error']} ({entry['last_error_at']}; "
                         "rounds have succeeded since)")
    for peer in report.get("gossip", []):
        checked = peer["checked_at"] or "never"
        problem = f"; last problem: {peer['last_error']}" if peer["last_error"] else ""
        lines.append(f"gossip peer {peer['url']}  compared {checked}{problem}")
    total = report["fingerprints"]
    if total is not None:
        lines.append("")
        lines.append(f"fingerprints: {total['active']} active, {total['withdrawn']} withdrawn, "
                     f"{total['suppressed']} suppressed")
    return "\n".join(lines)


def _node_line(node: dict) -> str:
    checkpoint = f", last checkpoint {node['last_checkpoint_at']}" if node["last_checkpoint_at"] else ""
    serving = "serving" if node["serving"] else "NOT SERVING (no `ncii-node serve` runs for this directory)"
    line = f"this node: {node['origin']} ({node['role']}), log size {node['log_size']}{checkpoint}; {serving}"
    database = node.get("database")
    if database:
        line += f"\ndatabase: {database['backend']} ({database.get('url') or database.get('path')})"
    return line


def _sync_note(entry: dict) -> str:
    """When a round last confirmed holding the log's latest checkpoint, worded so that
    it never contradicts the lag or the state printed beside it."""
    if entry["lag_seconds"] is None:
        return ""
    if entry["state"] == "ok" and not entry["lag_entries"]:
        return f" (in sync: confirmed {entry['lag_seconds']} s ago)"
    return f" (last in sync {entry['lag_seconds']} s ago)"


def exit_status(report: dict, serving: bool = True) -> int:
    """EXIT_FORKED, EXIT_FAILING, EXIT_NOT_SERVING or EXIT_OK (EXIT_STATUS_HELP)."""
    if report["forked_logs"] or (report.get("federation") or {}).get("fork"):
        return EXIT_FORKED
    if report["failing_logs"] or any(peer["failures"] for peer in report.get("gossip", [])):
        return EXIT_FAILING
    return EXIT_OK if serving else EXIT_NOT_SERVING
