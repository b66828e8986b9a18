"""When did each followed log acknowledge this node's entries? (spec/parts/acknowledgements.md §4)

    case_platforms(db, own_origin, submissions, withdrawals, requested_day)
        what a person's case status shows per platform: when its fingerprints were
        applied, when its withdrawal was applied, or since when each is pending
    acknowledgement_statistics(db, own_origin, now, window)
        what the operator sees per platform: the distribution of the time from
        publication to acknowledgement of the cases' entries, submissions and
        withdrawals apart, what is pending and for how long; a platform that stops
        acknowledging shows up as `late` (or `silent` if it never acknowledged anything)

"Published" is when this node published the first checkpoint holding the entry
(log_checkpoints.published_at); "acknowledged" is the time the followed log signed in
its first acknowledgement of a tree holding it (follow_acks, steps only: valid and not
known to be false). The participating platforms are the logs this node follows,
named as the operator named them (`follow add --name`), never as they name
themselves.
"""

from __future__ import annotations

import datetime
import time

from node.store import follow as follow_store
from protocol.acknowledgements import Latency, Timeline, summarize

LATE_AFTER = 60.0          # seconds an entry may wait before its acknowledger counts as late
DEFAULT_WINDOW = 7 * 86400
MAX_GROUPS = 10_000        # checkpoints per kind, the newest, for the statistics


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def platform_name(followed) -> str:
    return followed.name or followed.origin


def _published_at(db, size: int) -> float | None:
    row = db.execute("SELECT published_at FROM log_checkpoints WHERE size = ?", (size,)).fetchone()
    return row[0] if row else None


def _applied(db, from_origin: str, own_origin: str, index: int | None, published_size: int | None) -> dict | None:
    """{applied: true, at} or {applied: false, pending_since} for the entries of a case
    up to `index`, first published in the checkpoint of `published_size`."""
    if index is None:
        return None
    at_ms = follow_store.ack_covering(db, from_origin, own_origin, index)
    if at_ms is not None:
        return {"applied": True, "at": iso(at_ms / 1000)}
    since = _published_at(db, published_size) if published_size is not None else None
    return {"applied": False, "pending_since": iso(since)}


def case_platforms(db, own_origin: str, submissions: list[tuple[int, int]],
                   withdrawals: list[tuple[int, int]] | None) -> list[dict]:
    """Per followed log: `fingerprints` and `withdrawal`, each {"applied": true, "at":
    RFC 3339} or {"applied": false, "pending_since": RFC 3339 or null (not yet
    published)}. `submissions` and `withdrawals` are (index, first checkpoint size) of
    the case's published entries; `withdrawals` is None when the case is not withdrawn."""
    out = []
    last_sub = max(submissions, default=(None, None))
    last_wd = max(withdrawals or [], default=None)
    for followed in follow_store.list_logs(db):
        entry: dict = {"name": platform_name(followed)}
        if followed.forked:
            entry["log_disputed"] = True  # its log forked: nothing it says is believed any more
        entry["fingerprints"] = _applied(db, followed.origin, own_origin, *last_sub)
        if withdrawals is None:
            entry["withdrawal"] = None
        elif last_wd is None:
            entry["withdrawal"] = {"applied": False, "pending_since": None}  # requested, not yet published
        else:
            entry["withdrawal"] = _applied(db, followed.origin, own_origin, *last_wd)
        out.append(entry)
    return out


# ------------------------------------------------------------------------------ statistics

def acknowledgement_statistics(db, own_origin: str, now: float | None = None, window: float = DEFAULT_WINDOW,
                               late_after: float = LATE_AFTER) -> dict:
    """Per followed log, the acknowledgement latencies of the cases' submissions and
    withdrawal entries published in the last `window` seconds (the newest MAX_GROUPS
    checkpoints of each): see protocol.acknowledgements.summarize. Entries are taken
    by the checkpoint that first held them -- they share its publication time, and an
    acknowledgement covers all of a checkpoint or none of it -- so the work grows with
    checkpoints, not entries."""
    from node.store import cases as case_store
    from node.store import log as log_store
    from node.store import stats as stats_store

    now = time.time() if now is None else now
    since = now - window
    row = db.execute("SELECT MAX(size) FROM log_checkpoints WHERE published_at < ?", (since,)).fetchone()
    since_size = row[0] or 0
    groups = {"submissions": stats_store.published_groups(db, since_size, MAX_GROUPS),
              "withdrawals": case_store.withdrawal_groups(db, since_size, MAX_GROUPS)}
    published = log_store.published_times(db, {size for rows in groups.values() for size, _, _ in rows})
    false = [a.from_origin for a in follow_store.false_acks(db, own_origin)]
    platforms = []
    for followed in follow_store.list_logs(db):
        steps = follow_store.ack_steps(db, followed.origin, own_origin, since_size)
        acked = Timeline.of((size, at / 1000) for size, at in steps)
        latest = follow_store.latest_step(db, followed.origin, own_origin)
        entry: dict = {"name": platform_name(followed), "origin": followed.origin,
                       "acknowledged_size": latest.size if latest else 0,
                       "last_acknowledgement": iso(latest.time_ms / 1000) if latest else None}
        oldest_pending = None
        for kind, rows in groups.items():
            items = [Latency(last, published.get(size), acked.covered_at(last), n) for size, n, last in rows]
            summary = summarize(items, now)
            if "pending_since" in summary:
                summary["pending_since"] = iso(summary["pending_since"])
                oldest_pending = max(oldest_pending or 0.0, summary["oldest_pending_seconds"])
            entry[kind] = summary
        if followed.forked:
            entry["state"] = "forked"
        elif oldest_pending is not None and oldest_pending > late_after:
            entry["state"] = "silent" if latest is None else "late"
        else:
            entry["state"] = "ok"
        entry["false_acknowledgements"] = false.count(followed.origin)
        platforms.append(entry)
    return {"window_seconds": window, "since": iso(since), "late_after_seconds": late_after,
            "entries": {kind: sum(n for _, n, _ in rows) for kind, rows in groups.items()}, "platforms": platforms}
