"""Summary tables for the operator's figures: the console, `ncii-node stats`, /metrics.

Counting a million feedback entries or a hundred thousand cases on every page view
would be slow, so the figures are kept as small daily summaries, written in the SAME
transaction as the rows they summarise (so a summary never disagrees with its rows):

- `stats_log_daily(day, kind, detail, n)`: entries of this node's own log per UTC day
  (days since 1970-01-01) they were stored, by kind (submission, withdrawal, feedback,
  announcement) and detail (the signal of a submission, the verdict of a feedback,
  the reason of a withdrawal). Written by node/store/log.py `insert_entries`.
- `stats_verdicts_daily(platform, day, verdict, n)`: feedback entries received from
  each followed log (`platform` = its origin), by the day the follower verified them.
- `stats_entry_verdicts(platform, idx, first_at, removed_at)` and
  `stats_case_verdicts(platform, case_id, first_at, removed_at)`: for entries of this
  node's own log (and their cases), when each platform first gave any verdict and
  first said `removed`. Only feedback whose quoted leaf hash is the entry's counts.
- `stats_outcomes_daily(platform, day, measure, n)`, keyed by the day of the FIRST
  verdict (a cohort): `entries_answered`, `entries_removed` (of those, removed since),
  `cases_answered`, `cases_removed`, and `wait:<bucket>`, the time from an entry's
  publication to the platform's first verdict on it (BUCKETS).
- `stats_feedback_mark(platform, summarised_to)`: feedback of that log below this
  index is summarised; summarising is idempotent (a range is never counted twice).
- `stats_match_daily(day, origin, measure, n)`: on a platform, entries matched per
  followed log (`matches`) and queries answered (origin '', `queries`), flushed from
  memory by the running node.
- `stats_follow_errors(origin, n)`: failed follower rounds per followed log, ever.
- `stats_case_daily(day, opened, withdrawn)`: cases opened (their creation completed:
  state active or withdrawn) by the day they were created, and cases withdrawn by the
  day of the withdrawal. Kept by triggers on `cases` (node/store/cases.py need not
  know), so every change of a case's state is counted in its own transaction.
- `stats_case_published(checkpoint_size, entries, last_idx)`: the cases' entries by
  the checkpoint that first held them (how many, the greatest index): what the
  acknowledgement statistics group by (node/acks/report.py). Kept by a trigger on
  `case_entries` when an entry's index and checkpoint are recorded.

Nothing here names a person: counts per day, per log origin, per verdict.

Contract of StatsRepository (`db.stats`): a summary never disagrees with the rows it
summarises. Its writers (`count_entries`, `count_follow_error`, `summarise_feedback`)
run inside the caller's transaction, the one that writes those rows (and the triggers
count cases in the case's own); `summarise_feedback` is idempotent (a range is never
counted twice). `add_matches` is a transaction of its own. Reads are by day, in order.
"""

from __future__ import annotations

import bisect
import collections
import time

import sqlite_utils

from protocol.entries import entry_summary_key

AREA = "stats"
DAY = 86400

#: Upper bounds (seconds) of the publication -> first verdict buckets; the last is open.
BUCKETS: tuple[tuple[str, float], ...] = (
    ("1m", 60), ("10m", 600), ("1h", 3600), ("6h", 6 * 3600), ("1d", DAY), ("3d", 3 * DAY), ("7d", 7 * DAY),
    ("more", float("inf")),
)


def day_of(t: float) -> int:
    return int(t // DAY)


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE stats_log_daily (
        day INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (day, kind, detail)) WITHOUT ROWID""")
    db.execute("""CREATE TABLE stats_verdicts_daily (
        platform TEXT NOT NULL, day INTEGER NOT NULL, verdict TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (platform, day, verdict)) WITHOUT ROWID""")
    for what, key in (("entry", "idx"), ("case", "case_id")):
        db.execute(f"""CREATE TABLE stats_{what}_verdicts (
            platform TEXT NOT NULL, {key} INTEGER NOT NULL, first_at REAL NOT NULL, removed_at REAL,
            PRIMARY KEY (platform, {key})) WITHOUT ROWID""")
    db.execute("""CREATE TABLE stats_outcomes_daily (
        platform TEXT NOT NULL, day INTEGER NOT NULL, measure TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (platform, day, measure)) WITHOUT ROWID""")
    db.execute("CREATE TABLE stats_feedback_mark (platform TEXT PRIMARY KEY, summarised_to INTEGER NOT NULL)")
    db.execute("""CREATE TABLE stats_match_daily (
        day INTEGER NOT NULL, origin TEXT NOT NULL, measure TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (day, origin, measure)) WITHOUT ROWID""")
    db.execute("CREATE TABLE stats_follow_errors (origin TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    db.execute("""CREATE TABLE stats_case_daily (day INTEGER PRIMARY KEY, opened INTEGER NOT NULL DEFAULT 0,
        withdrawn INTEGER NOT NULL DEFAULT 0)""")
    _case_triggers(db)
    _backfill(db)


def _v2(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE stats_case_published (
        checkpoint_size INTEGER PRIMARY KEY, entries INTEGER NOT NULL, last_idx INTEGER NOT NULL) WITHOUT ROWID""")
    if getattr(db, "dialect", "sqlite") == "postgresql":
        _pg_trigger(db, "stats_case_entry_published", "AFTER UPDATE OF checkpoint_size ON case_entries", """
        IF OLD.checkpoint_size IS NULL AND NEW.checkpoint_size IS NOT NULL THEN
            INSERT INTO stats_case_published VALUES (NEW.checkpoint_size, 1, NEW.idx) ON CONFLICT (checkpoint_size)
            DO UPDATE SET entries = stats_case_published.entries + 1,
                          last_idx = GREATEST(stats_case_published.last_idx, NEW.idx);
        END IF;""")
    else:
        db.execute("""CREATE TRIGGER stats_case_entry_published AFTER UPDATE OF checkpoint_size ON case_entries
            WHEN old.checkpoint_size IS NULL AND new.checkpoint_size IS NOT NULL BEGIN
            INSERT OR IGNORE INTO stats_case_published VALUES (new.checkpoint_size, 0, new.idx);
            UPDATE stats_case_published SET entries = entries + 1, last_idx = MAX(last_idx, new.idx)
            WHERE checkpoint_size = new.checkpoint_size; END""")
    db.execute("INSERT INTO stats_case_published SELECT checkpoint_size, COUNT(*), MAX(idx) FROM case_entries "
               "WHERE checkpoint_size IS NOT NULL GROUP BY checkpoint_size")


MIGRATIONS = [_v1, _v2]


OPEN = "('active', 'withdrawn')"  # the states of a case whose creation completed


def _pg_trigger(db, name: str, event: str, body: str) -> None:
    """A PostgreSQL row trigger running `body` (PL/pgSQL), as SQLite's trigger of that name."""
    db.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$")
    db.execute(f"CREATE TRIGGER {name} {event} FOR EACH ROW EXECUTE FUNCTION {name}()")


def _case_triggers(db: sqlite_utils.Database) -> None:
    if getattr(db, "dialect", "sqlite") == "postgresql":
        def count(column: str, day: str) -> str:
            return (f"INSERT INTO stats_case_daily (day, {column}) VALUES ({day}, 1) ON CONFLICT (day) "
                    f"DO UPDATE SET {column} = stats_case_daily.{column} + 1;")
        _pg_trigger(db, "stats_case_inserted", "AFTER INSERT ON cases", f"""
            IF NEW.state IN {OPEN} THEN {count("opened", "NEW.created_day")} END IF;
            IF NEW.withdrawn_day IS NOT NULL THEN {count("withdrawn", "NEW.withdrawn_day")} END IF;""")
        _pg_trigger(db, "stats_case_opened", "AFTER UPDATE OF state ON cases", f"""
            IF OLD.state NOT IN {OPEN} AND NEW.state IN {OPEN} THEN {count("opened", "NEW.created_day")} END IF;""")
        _pg_trigger(db, "stats_case_withdrawn", "AFTER UPDATE OF withdrawn_day ON cases", f"""
            IF OLD.withdrawn_day IS NULL AND NEW.withdrawn_day IS NOT NULL THEN
                {count("withdrawn", "NEW.withdrawn_day")} END IF;""")
        return

    def count(column: str, day: str, when: str = "true") -> str:
        return (f"INSERT OR IGNORE INTO stats_case_daily (day) SELECT {day} WHERE {when}; "
                f"UPDATE stats_case_daily SET {column} = {column} + 1 WHERE day = {day} AND {when};")

    db.execute(f"""CREATE TRIGGER stats_case_inserted AFTER INSERT ON cases BEGIN
        {count("opened", "new.created_day", f"new.state IN {OPEN}")}
        {count("withdrawn", "new.withdrawn_day", "new.withdrawn_day IS NOT NULL")} END""")
    db.execute(f"""CREATE TRIGGER stats_case_opened AFTER UPDATE OF state ON cases
        WHEN old.state NOT IN {OPEN} AND new.state IN {OPEN} BEGIN {count("opened", "new.created_day")} END""")
    db.execute(f"""CREATE TRIGGER stats_case_withdrawn AFTER UPDATE OF withdrawn_day ON cases
        WHEN old.withdrawn_day IS NULL AND new.withdrawn_day IS NOT NULL BEGIN
        {count("withdrawn", "new.withdrawn_day")} END""")


def _backfill(db: sqlite_utils.Database) -> None:
    """Summarise what a database held before this area existed: own entries by the
    day of the first checkpoint that published them, followed feedback by the time of
    the first verified checkpoint that held it."""
    db.execute(f"INSERT INTO stats_case_daily (day, opened) SELECT created_day, COUNT(*) FROM cases "
               f"WHERE state IN {OPEN} GROUP BY created_day")
    db.execute("INSERT INTO stats_case_daily (day, withdrawn) SELECT withdrawn_day, COUNT(*) FROM cases "
               "WHERE withdrawn_day IS NOT NULL GROUP BY withdrawn_day "
               "ON CONFLICT (day) DO UPDATE SET withdrawn = excluded.withdrawn")
    checkpoints = db.execute("SELECT size, published_at FROM log_checkpoints ORDER BY size").fetchall()
    sizes = [size for size, _ in checkpoints]
    counts: collections.Counter = collections.Counter()
    for idx, prefix in db.execute("SELECT idx, substr(data, 1, 3) FROM log_entries ORDER BY idx"):
        at = bisect.bisect_right(sizes, idx)
        if at < len(checkpoints):
            counts[(day_of(checkpoints[at][1]), entry_summary_key(prefix))] += 1
    stats = StatsRepository(db)
    for (day, (kind, detail)), n in counts.items():
        stats._add_log_count(day, kind, detail, n)
    own = _own_origin(db)
    for (platform,) in db.execute("SELECT origin FROM followed_logs").fetchall():
        start = 0
        for size, verified_at in db.execute("SELECT size, verified_at FROM followed_checkpoints WHERE origin = ? "
                                            "ORDER BY size", (platform,)).fetchall():
            stats.summarise_feedback(platform, start, size, verified_at, own)
            start = size


def _own_origin(db: sqlite_utils.Database) -> str | None:
    """The origin this node signs, read from its latest checkpoint note (None before one)."""
    row = db.execute("SELECT note FROM log_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    return row[0].split(b"\n", 1)[0].decode("utf-8", "replace") if row else None


def _bucket_sql(wait: str) -> str:
    cases = " ".join(f"WHEN {wait} < {limit} THEN 'wait:{name}'" for name, limit in BUCKETS[:-1])
    return f"CASE {cases} ELSE 'wait:{BUCKETS[-1][0]}' END"


def _since(column: str, since_day: int | None) -> tuple[str, tuple]:
    return ("", ()) if since_day is None else (f" AND {column} >= ?", (since_day,))


class StatsRepository:
    """The operator's daily summaries (contract above)."""

    def __init__(self, db):
        self.db = db

    def published_groups(self, since_size: int, limit: int) -> list[tuple[int, int, int]]:
        """(checkpoint size, entries, greatest index) of the cases' entries first held by a
        checkpoint larger than `since_size`, the newest `limit` checkpoints."""
        return self.db.execute("SELECT checkpoint_size, entries, last_idx FROM stats_case_published "
                               "WHERE checkpoint_size > ? ORDER BY checkpoint_size DESC LIMIT ?", (since_size, limit)).fetchall()

    # -- writing (inside the caller's transaction) -----------------------------------------

    def _add_log_count(self, day: int, kind: str, detail: str, n: int) -> None:
        self.db.execute("INSERT INTO stats_log_daily (day, kind, detail, n) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (day, kind, detail) DO UPDATE SET n = stats_log_daily.n + excluded.n", (day, kind, detail, n))

    def count_entries(self, entries: list[bytes], now: float | None = None) -> None:
        """A batch of this node's own entries was stored now (called by log.insert_entries)."""
        day = day_of(time.time() if now is None else now)
        for prefix, n in collections.Counter(data[:3] for data in entries).items():
            kind, detail = entry_summary_key(prefix)
            self._add_log_count(day, kind, detail, n)

    def count_follow_error(self, origin: str) -> None:
        self.db.execute("INSERT INTO stats_follow_errors (origin, n) VALUES (?, 1) "
                        "ON CONFLICT (origin) DO UPDATE SET n = stats_follow_errors.n + 1", (origin,))

    def _add_outcomes(self, sql: str, args: tuple) -> None:
        """Add (platform, day, measure, n) rows selected by `sql` to stats_outcomes_daily."""
        self.db.execute(f"INSERT INTO stats_outcomes_daily (platform, day, measure, n) {sql} "
                        "ON CONFLICT (platform, day, measure) DO UPDATE SET n = stats_outcomes_daily.n + excluded.n", args)

    def summarise_feedback(self, platform: str, start: int, end: int, now: float,
                           own_origin: str | None) -> None:
        """Feedback entries start <= from_idx < end of the followed log `platform` were
        just stored (follow_feedback) at time `now`: add them to the summaries. Set-based
        (a few statements per round, whatever its size); a range already summarised is
        skipped, so calling this twice changes nothing."""
        row = self.db.execute("SELECT summarised_to FROM stats_feedback_mark WHERE platform = ?", (platform,)).fetchone()
        start = max(start, row[0] if row else 0)
        if start >= end:
            return
        self.db.execute("INSERT INTO stats_feedback_mark (platform, summarised_to) VALUES (?, ?) "
                        "ON CONFLICT (platform) DO UPDATE SET summarised_to = excluded.summarised_to", (platform, end))
        today = day_of(now)
        self.db.execute("INSERT INTO stats_verdicts_daily (platform, day, verdict, n) "
                        "SELECT ?, ?, verdict, COUNT(*) FROM follow_feedback WHERE from_origin = ? AND from_idx >= ? "
                        "AND from_idx < ? GROUP BY verdict "
                        "ON CONFLICT (platform, day, verdict) DO UPDATE SET n = stats_verdicts_daily.n + excluded.n",
                        (platform, today, platform, start, end))
        if own_origin is None:
            return
        # The round's verdicts on our own entries: per entry, whether one said `removed`.
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS stats_round_entries (idx INTEGER PRIMARY KEY, removed INTEGER)")
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS stats_round_cases (idx INTEGER PRIMARY KEY, removed INTEGER)")
        self.db.execute("DELETE FROM temp.stats_round_entries")
        self.db.execute("DELETE FROM temp.stats_round_cases")
        self.db.execute("INSERT INTO temp.stats_round_entries (idx, removed) "
                        "SELECT idx, MAX(CASE WHEN verdict = 'removed' THEN 1 ELSE 0 END) FROM follow_feedback WHERE from_origin = ? AND from_idx >= ? "
                        "AND from_idx < ? AND origin = ? AND entry_matches = 1 GROUP BY idx",
                        (platform, start, end, own_origin))
        self.db.execute("INSERT INTO temp.stats_round_cases (idx, removed) "
                        "SELECT e.case_id, MAX(r.removed) FROM temp.stats_round_entries r "
                        "JOIN case_entries e ON e.idx = r.idx GROUP BY e.case_id")
        # Time from publication to the first verdict, for entries answered for the first time.
        published = "(SELECT c.published_at FROM log_checkpoints c WHERE c.size > r.idx ORDER BY c.size LIMIT 1)"
        self._add_outcomes(f"SELECT ?, ?, {_bucket_sql('wait')} AS bucket, COUNT(*) FROM ("
                          f"SELECT ? - {published} AS wait FROM temp.stats_round_entries r WHERE NOT EXISTS ("
                          "SELECT 1 FROM stats_entry_verdicts v WHERE v.platform = ? AND v.idx = r.idx)) "
                          "AS waits WHERE wait IS NOT NULL GROUP BY bucket", (platform, today, now, platform))
        for what, key, table in (("entries", "idx", "stats_entry_verdicts"), ("cases", "case_id", "stats_case_verdicts")):
            staged = "temp.stats_round_entries" if what == "entries" else "temp.stats_round_cases"
            answered = self.db.execute(f"INSERT OR IGNORE INTO {table} (platform, {key}, first_at) "
                                       f"SELECT ?, idx, ? FROM {staged}", (platform, now)).rowcount
            if answered:
                self._add_outcomes("SELECT ?, ?, ?, ? WHERE true", (platform, today, f"{what}_answered", answered))
            # Removed for the first time: counted on the day of the first verdict (the cohort).
            # (whole seconds, then whole days: PostgreSQL's CAST rounds where SQLite's truncates)
            self._add_outcomes(f"SELECT ?, CAST(v.first_at AS BIGINT) / {DAY} AS d, ?, COUNT(*) FROM {table} v "
                              f"JOIN {staged} r ON r.idx = v.{key} WHERE v.platform = ? AND r.removed = 1 "
                              "AND v.removed_at IS NULL GROUP BY d",
                               (platform, f"{what}_removed", platform))
            self.db.execute(f"UPDATE {table} SET removed_at = ? WHERE platform = ? AND removed_at IS NULL "
                            f"AND {key} IN (SELECT idx FROM {staged} WHERE removed = 1)", (now, platform))

    def add_matches(self, day: int, queries: int, matches: dict[str, int]) -> None:
        """Add counts gathered in memory by the running node (one transaction)."""
        rows = [(day, origin, "matches", n) for origin, n in matches.items() if n]
        if queries:
            rows.append((day, "", "queries", queries))
        with self.db.atomic():
            self.db.conn.executemany("INSERT INTO stats_match_daily (day, origin, measure, n) VALUES (?, ?, ?, ?) "
                                     "ON CONFLICT (day, origin, measure) DO UPDATE SET n = stats_match_daily.n + excluded.n", rows)

    # -- reading --------------------------------------------------------------------------

    def cases_per_day(self, since_day: int | None) -> dict[int, dict[str, int]]:
        """{day: {"opened": n, "withdrawn": n}}: cases whose creation completed, by the day
        they were opened, and withdrawals by their day."""
        where, args = _since("day", since_day)
        return {day: {"opened": opened, "withdrawn": withdrawn} for day, opened, withdrawn in self.db.execute(
            f"SELECT day, opened, withdrawn FROM stats_case_daily WHERE true{where} ORDER BY day", args)}

    def case_totals(self) -> dict[str, int]:
        """Cases ever opened (creation completed) and withdrawn, whatever the window."""
        opened, withdrawn = self.db.execute("SELECT COALESCE(SUM(opened), 0), COALESCE(SUM(withdrawn), 0) "
                                            "FROM stats_case_daily").fetchone()
        return {"opened": opened, "withdrawn": withdrawn}

    def log_per_day(self, since_day: int | None) -> list[tuple[int, str, str, int]]:
        """(day, kind, detail, n) of this node's own log."""
        where, args = _since("day", since_day)
        return self.db.execute(f"SELECT day, kind, detail, n FROM stats_log_daily WHERE true{where} ORDER BY day",
                               args).fetchall()

    def verdicts_per_day(self, since_day: int | None) -> list[tuple[str, int, str, int]]:
        """(platform, day, verdict, n) of feedback received."""
        where, args = _since("day", since_day)
        return self.db.execute(f"SELECT platform, day, verdict, n FROM stats_verdicts_daily WHERE true{where} "
                               "ORDER BY platform, day", args).fetchall()

    def feedback_totals(self) -> list[tuple[str, str, int]]:
        """(platform, verdict, n) of every feedback entry ever received."""
        return self.db.execute("SELECT platform, verdict, SUM(n) FROM stats_verdicts_daily GROUP BY platform, verdict "
                               "ORDER BY platform, verdict").fetchall()

    def outcomes(self, since_day: int | None) -> dict[str, dict[str, int]]:
        """{platform: {measure: n}} summed over the days of first verdicts in the window."""
        where, args = _since("day", since_day)
        out: dict[str, dict[str, int]] = collections.defaultdict(dict)
        for platform, measure, n in self.db.execute(f"SELECT platform, measure, SUM(n) FROM stats_outcomes_daily "
                                                    f"WHERE true{where} GROUP BY platform, measure", args):
            out[platform][measure] = n
        return dict(out)

    def matches_per_day(self, since_day: int | None) -> list[tuple[int, str, str, int]]:
        """(day, origin, measure, n): matches per followed log, queries (origin '')."""
        where, args = _since("day", since_day)
        return self.db.execute(f"SELECT day, origin, measure, n FROM stats_match_daily WHERE true{where} ORDER BY day",
                               args).fetchall()

    def suppressions(self, since_day: int | None) -> dict[str, dict[str, int]]:
        """{origin: {"total": n, "window": n}}: entries suppressed as known false matches."""
        cutoff = -1 if since_day is None else since_day * DAY
        return {origin: {"total": total, "window": recent} for origin, total, recent in self.db.execute(
            "SELECT origin, COUNT(*), SUM(CASE WHEN suppressed_at >= ? THEN 1 ELSE 0 END) FROM match_suppressions GROUP BY origin", (cutoff,))}

    def follow_errors(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT origin, n FROM stats_follow_errors").fetchall())

    def own_log_size(self) -> tuple[int, float | None]:
        """(size, published_at) of this node's latest checkpoint; (0, None) before one."""
        row = self.db.execute("SELECT size, published_at FROM log_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, None)
