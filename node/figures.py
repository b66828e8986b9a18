"""The figures an operator reads: the console, `ncii-node stats`, /metrics.

Built from the store's daily summaries (node/store/stats.py) and the follower's
state, so that a page stays fast with a hundred thousand cases and a million
feedback entries; `live` adds what only the running node knows (match index,
memory, match latency).

Definitions (README "Operating a node" says the same):
  window          7d / 30d: today (UTC) and the 6 / 29 days before; all: everything.
  takedown rate   per platform, of the cases (entries) whose FIRST verdict from that
                  platform arrived in the window, the share that the platform has
                  said `removed` for (so far): cases with at least one removed entry
                  / cases with any verdict; fingerprints removed / fingerprints matched
                  (any verdict means the platform matched the entry).
  first verdict   time from the publication of an entry (its first checkpoint) to the
                  platform's first verdict on it, as the follower received it.
  acknowledged    per platform, the time from the publication of each of this
                  helpline's submissions and withdrawals in the window to the time the
                  platform signed in its first acknowledgement of a tree holding it
                  (node/acks/report.py; spec/parts/acknowledgements.md §4).
"""

from __future__ import annotations

import datetime
import re
import time

from node.store import stats as store
from protocol.entries import VERDICTS

WINDOWS = {"7d": 7, "30d": 30, "all": None}
DEFAULT_WINDOW = "30d"


class WindowError(ValueError):
    pass


def since_day(window: str, now: float) -> int | None:
    """First day (days since 1970-01-01, UTC) of a window: "7d", "30d", "all", "<N>d"
    or a date "YYYY-MM-DD". Raises WindowError."""
    today = store.day_of(now)
    if window == "all":
        return None
    match = re.fullmatch(r"([1-9][0-9]{0,4})d", window)
    if match:
        return today - int(match.group(1)) + 1
    try:
        return (datetime.date.fromisoformat(window) - datetime.date(1970, 1, 1)).days
    except ValueError:
        raise WindowError(f"a window is 7d, 30d, all, a number of days like 90d, or a date YYYY-MM-DD; "
                          f"not {window!r:.40}") from None


def date_of(day: int) -> str:
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def _rate(part: int, whole: int) -> float | None:
    return None if not whole else round(100.0 * part / whole, 1)


#: Case-creation limits a configuration may hold ([cases], the abuse limits of
#: spec/parts/cases.md): (key, whom it limits, per how many seconds).
CREATION_LIMITS = (
    ("per_address_per_hour", "address", 3600), ("per_address_per_day", "address", 86400),
    ("per_network_per_hour", "network", 3600), ("per_network_per_day", "network", 86400),
    ("per_hour", "node", 3600), ("per_day", "node", 86400),
)


def creation_limits(config) -> list[dict]:
    """The case-creation limits in force, to set the creation rate against:
    [{"name", "scope", "per_seconds", "limit"}], for those this configuration has."""
    limits = []
    for key, scope, seconds in CREATION_LIMITS:
        value = getattr(config.cases, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            limits.append({"name": key, "scope": scope, "per_seconds": seconds, "limit": value})
    return limits


def node_figures(db, config, window: str = DEFAULT_WINDOW, now: float | None = None,
                 live: dict | None = None) -> dict:
    """Everything the console shows, as one JSON-ready object."""
    from node.follow.status import status_report

    now = time.time() if now is None else now
    first = since_day(window, now)
    role = config.node.role
    size, published_at = store.own_log_size(db)
    figures: dict = {
        "origin": config.node.origin, "role": role, "window": window,
        "since": None if first is None else date_of(first), "today": date_of(store.day_of(now)),
        "generated_at": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds"),
        "log": _log_figures(db, first, size, published_at),
    }
    report = status_report(db, now, fingerprints=False)
    figures["followed"] = [{key: entry[key] for key in (
        "origin", "name", "display_name", "url", "state", "size", "lag_entries", "lag_seconds", "last_error",
        "last_error_at", "failures", "errors_total", "forked", "fork_reason", "last_verified_at", "held",
        "held_clusters")}
        for entry in report["logs"]]
    if role == "helpline":
        figures["cases"] = _case_figures(db, first, config, now)
        figures["acknowledgements"] = _ack_figures(db, config.node.origin, first, now)
    figures["verdicts_received"] = _verdict_figures(db, first)
    figures["takedown"] = _takedown_figures(db, first, figures["verdicts_received"])
    if role == "platform":
        figures["matching"] = _matching_figures(db, first, live or {})
    if live:
        figures["process"] = {key: live[key] for key in ("rss_bytes",) if key in live}
    return figures


def _log_figures(db, first: int | None, size: int, published_at: float | None) -> dict:
    per_day: dict[str, dict] = {}
    totals: dict[str, int] = {}
    published: dict[str, int] = {}
    verdicts_sent: dict[str, int] = {}
    for day, kind, detail, n in store.log_per_day(db, first):
        date = date_of(day)
        row = per_day.setdefault(date, {})
        key = f"{kind}:{detail}" if detail else kind
        row[key] = row.get(key, 0) + n
        totals[kind] = totals.get(kind, 0) + n
        if kind == "submission":
            published[detail] = published.get(detail, 0) + n
        elif kind == "feedback":
            verdicts_sent[detail] = verdicts_sent.get(detail, 0) + n
    return {"size": size,
            "last_checkpoint_at": None if published_at is None else datetime.datetime.fromtimestamp(
                published_at, datetime.timezone.utc).isoformat(timespec="seconds"),
            "per_day": per_day, "entries": totals, "fingerprints_published": published,
            "verdicts_sent": verdicts_sent}


def _case_figures(db, first: int | None, config, now: float) -> dict:
    raw = store.cases_per_day(db, first)
    per_day = {date_of(day): counts for day, counts in sorted(raw.items())}
    opened = sum(c["opened"] for c in per_day.values())
    withdrawn = sum(c["withdrawn"] for c in per_day.values())
    today = per_day.get(date_of(store.day_of(now)), {}).get("opened", 0)
    today_number = store.day_of(now)
    start = first if first is not None else min(raw, default=today_number)
    days = max(1, today_number - start + 1)
    return {"opened": opened, "withdrawn": withdrawn, "totals": store.case_totals(db), "per_day": per_day,
            "creation": {"today": today, "per_day_average": round(opened / days, 2),
                         "busiest_day": max((c["opened"] for c in per_day.values()), default=0),
                         "limits": creation_limits(config),
                         "today_of_node_budget": _rate(today, _node_day_budget(config))}}


def _ack_figures(db, origin: str, first: int | None, now: float) -> dict:
    from node.acks.report import acknowledgement_statistics

    window = now - first * store.DAY if first is not None else now
    return acknowledgement_statistics(db, origin, now, window=window)


def _node_day_budget(config) -> int:
    return next((limit["limit"] for limit in creation_limits(config)
                 if limit["scope"] == "node" and limit["per_seconds"] == 86400), 0)


def _verdict_figures(db, first: int | None) -> dict:
    out: dict[str, dict] = {}
    for platform, day, verdict, n in store.verdicts_per_day(db, first):
        p = out.setdefault(platform, {"per_day": {}, "totals": {v: 0 for v in VERDICTS}})
        p["per_day"].setdefault(date_of(day), {})[verdict] = n
        p["totals"][verdict] = p["totals"].get(verdict, 0) + n
    return out


def _takedown_figures(db, first: int | None, verdicts: dict) -> dict:
    out = {}
    for platform, m in sorted(store.outcomes(db, first).items()):
        cases, cases_removed = m.get("cases_answered", 0), m.get("cases_removed", 0)
        entries, entries_removed = m.get("entries_answered", 0), m.get("entries_removed", 0)
        out[platform] = {
            "cases_answered": cases, "cases_removed": cases_removed, "case_rate": _rate(cases_removed, cases),
            "fingerprints_matched": entries, "fingerprints_removed": entries_removed,
            "fingerprint_rate": _rate(entries_removed, entries),
            "first_verdict_wait": {name: m.get(f"wait:{name}", 0) for name, _ in store.BUCKETS},
        }
    return out


def _matching_figures(db, first: int | None, live: dict) -> dict:
    per_day: dict[str, dict] = {}
    matches: dict[str, int] = {}
    queries = 0
    for day, origin, measure, n in store.matches_per_day(db, first):
        row = per_day.setdefault(date_of(day), {})
        if measure == "queries":
            row[""] = row.get("", 0) + n
            queries += n
        else:
            row[origin] = row.get(origin, 0) + n
            matches[origin] = matches.get(origin, 0) + n
    return {"per_day": per_day, "matches": matches, "queries": queries,
            "suppressions": store.suppressions(db, first),
            "index": live.get("matcher"), "latency": live.get("latency")}


def store_snapshot(db, config, live: dict, now: float | None = None) -> dict:
    """What /metrics reads from the database: cheap queries only (≤ 50 ms in all)."""
    from node.follow.status import status_report

    now = time.time() if now is None else now
    entries: dict[tuple[str, str], int] = {}
    for _day, kind, detail, n in store.log_per_day(db, None):
        entries[(kind, detail)] = entries.get((kind, detail), 0) + n
    snapshot = {
        "log_size": live.get("log_size", store.own_log_size(db)[0]),
        "log_entries": entries,
        "feedback": store.feedback_totals(db),
        "followed": status_report(db, now, fingerprints=False)["logs"],
        "version": version(),
    }
    if config.node.role == "helpline":
        snapshot["cases"] = store.case_totals(db)
    if live.get("matcher"):
        snapshot["index"] = live["matcher"]
    return snapshot


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("ncii-node")
    except PackageNotFoundError:
        return "unknown"


# -- text, for `ncii-node stats` -------------------------------------------------------------

def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1f} %"


def _ack_summary(s: dict) -> str:
    text = (f"p50 {s['p50']} s, p90 {s['p90']} s, p99 {s['p99']} s, max {s['max']} s of {s['acknowledged']}"
            if s.get("acknowledged") else "none acknowledged")
    if s.get("pending"):
        text += f"; {s['pending']} pending, the oldest for {s['oldest_pending_seconds']:.0f} s"
    return text


def format_figures(f: dict) -> str:
    since = f"since {f['since']}" if f["since"] else "all time"
    lines = [f"{f['origin']} ({f['role']}), {since} (today {f['today']}, UTC)", ""]
    log = f["log"]
    lines.append(f"own log: {log['size']} entries" + (f", last checkpoint {log['last_checkpoint_at']}"
                                                       if log["last_checkpoint_at"] else ""))
    if log["entries"]:
        lines.append("  appended in the window: " + ", ".join(f"{n} {k}" for k, n in sorted(log["entries"].items())))
    if "cases" in f:
        c = f["cases"]
        lines += ["", f"cases: {c['opened']} opened, {c['withdrawn']} withdrawn in the window "
                      f"({c['totals']['opened']} opened, {c['totals']['withdrawn']} withdrawn in all)",
                  f"  fingerprints published: " + (", ".join(f"{n} {s}" for s, n in
                                                             sorted(log["fingerprints_published"].items())) or "0"),
                  f"  creation rate: {c['creation']['today']} today, {c['creation']['per_day_average']} a day on "
                  f"average, {c['creation']['busiest_day']} on the busiest day"
                  + ("" if c["creation"]["limits"] else " (no creation limit configured)")]
        for limit in c["creation"]["limits"]:
            lines.append(f"  limit: {limit['limit']} per {limit['per_seconds'] // 3600} h per {limit['scope']}")
        if c["creation"]["today_of_node_budget"] is not None:
            lines.append(f"  today: {_pct(c['creation']['today_of_node_budget'])} of the node's daily budget")
    if f.get("acknowledgements", {}).get("platforms"):
        acks = f["acknowledgements"]
        lines += ["", "acknowledgements: publication -> each platform's signed acknowledgement "
                      f"({acks['entries']['submissions']} submissions, {acks['entries']['withdrawals']} withdrawals "
                      "in the window):"]
        for p in acks["platforms"]:
            state = {"late": f"LATE: an entry waits for more than {acks['late_after_seconds']:.0f} s",
                     "silent": "SILENT: it never acknowledged anything"}.get(p["state"], p["state"])
            lines.append(f"  {p['name']} ({p['origin']}) [{state}]: up to size {p['acknowledged_size']}, "
                         f"last at {p['last_acknowledgement'] or 'never'}"
                         + (f", {p['false_acknowledgements']} FALSE acknowledgement(s)"
                            if p["false_acknowledgements"] else ""))
            for kind in ("submissions", "withdrawals"):
                lines.append(f"    {kind}: {_ack_summary(p[kind])}")
    if f["verdicts_received"]:
        lines += ["", "verdicts received (in the window):"]
        for platform, v in sorted(f["verdicts_received"].items()):
            lines.append(f"  {platform}: " + ", ".join(f"{n} {verdict}" for verdict, n in v["totals"].items()))
    if f["takedown"]:
        lines += ["", "takedown rate (cases and fingerprints first answered in the window):"]
        for platform, t in f["takedown"].items():
            lines.append(f"  {platform}: cases {_pct(t['case_rate'])} ({t['cases_removed']} removed of "
                         f"{t['cases_answered']} with a verdict); fingerprints {_pct(t['fingerprint_rate'])} "
                         f"({t['fingerprints_removed']} removed of {t['fingerprints_matched']} matched)")
            wait = ", ".join(f"{name} {n}" for name, n in t["first_verdict_wait"].items() if n)
            if wait:
                lines.append(f"    publication -> first verdict: {wait}")
    if "matching" in f:
        m = f["matching"]
        lines += ["", f"matching: {m['queries']} queries answered in the window"]
        for origin, n in sorted(m["matches"].items()):
            lines.append(f"  {origin}: {n} matches")
        for origin, s in sorted(m["suppressions"].items()):
            lines.append(f"  {origin}: {s['total']} suppressed as known false matches ({s['window']} in the window)")
        if log["verdicts_sent"]:
            lines.append("  verdicts sent: " + ", ".join(f"{n} {v}" for v, n in sorted(log["verdicts_sent"].items())))
    if f["followed"]:
        lines += ["", "followed logs:"]
        for entry in f["followed"]:
            lag = f", {entry['lag_entries']} behind" if entry["lag_entries"] else ""
            held = entry["held"]
            held = f", HELD {held['cluster']} in clusters, {held['budget']} beyond budgets" \
                if held["cluster"] or held["budget"] else ""
            lines.append(f"  {entry['origin']} [{entry['state']}]: {entry['size']} verified{lag}, "
                         f"{entry['errors_total']} failed rounds in all{held}")
    return "\n".join(lines)
