"""The daily summaries behind the operator's figures (node/store/stats.py) and the
figures built from them (node/figures.py): counted once, on the right day, in the
right cohort; rebuilt from older databases by the migration exactly as the live path
counts."""

from __future__ import annotations

import pytest

from node.figures import WindowError, node_figures, since_day
from node.store import area_modules, connect, migrate, open_db
from node.store import cases as case_store
from node.store import follow as follow_store
from node.store import log as log_store
from node.store import stats
from node.follow.apply import apply_staged, stage_entries
from protocol.entries import Feedback, Submission, Withdrawal, encode_entry, entry_summary_key
from protocol.merkle import leaf_hash
from protocol.note import Signer

OWN = "own.example/log"
PLATFORM = "platform.example/feedback"
DAY = 86400
T0 = 20_000 * DAY  # a fixed day number, noon
NOON = T0 + DAY / 2


def submissions(n: int) -> list[bytes]:
    return [encode_entry(Submission("pdq", bytes([i % 251, i // 251]) * 16, 90)) for i in range(n)]


@pytest.fixture
def db(tmp_path):
    database = open_db(tmp_path / "node.db")
    yield database
    database.close()


def publish_own(db, entries: list[bytes], at: float) -> None:
    start = log_store.entry_count(db)
    log_store.insert_entries(db, start, entries, [leaf_hash(e) for e in entries])
    log_store.record_checkpoint(db, start + len(entries), b"\0" * 32, f"{OWN}\n{start + len(entries)}\n".encode(), at)


def receive(db, verdicts: list[tuple[int, str]], at: float, entries: list[bytes]) -> None:
    """The follower applies feedback entries of PLATFORM naming our entries."""
    first = db.execute("SELECT COALESCE(MAX(from_idx) + 1, 0) FROM follow_feedback WHERE from_origin = ?",
                       (PLATFORM,)).fetchone()[0]
    batch = [encode_entry(Feedback(OWN, idx, leaf_hash(entries[idx]), verdict)) for idx, verdict in verdicts]
    with db.atomic():
        follow_store.reset_staging(db, PLATFORM)
        stage_entries(db, PLATFORM, first, batch, [leaf_hash(e) for e in batch])
        apply_staged(db, PLATFORM, "", OWN, now=at)


def test_entry_summary_key():
    assert entry_summary_key(encode_entry(Submission("pdq", b"\1" * 32))[:3]) == ("submission", "pdq")
    assert entry_summary_key(encode_entry(Withdrawal((1,), "duplicate"))[:3]) == ("withdrawal", "duplicate")
    assert entry_summary_key(encode_entry(Feedback(OWN, 1, b"\0" * 32, "removed"))[:3]) == ("feedback", "removed")
    assert entry_summary_key(b"\1\x09\0") == ("unknown", "")
    assert entry_summary_key(b"\1\3\x77") == ("feedback", "unknown")
    assert entry_summary_key(b"") == ("unknown", "")


def test_takedown_cohorts_and_wait(db):
    follow_store.add_log(db, PLATFORM, "http://p", Signer.generate(PLATFORM).verifier_key())
    entries = submissions(6)
    publish_own(db, entries, NOON - 30)
    # Cases: 0 -> entries 0, 1; 1 -> entries 2, 3; 2 -> entries 4, 5.
    for c in range(3):
        case_id = case_store.insert_pending_case(db, bytes([c]) * 32, b"s", b"h", "p", 20_000,
                                                 [(leaf_hash(entries[2 * c + k]), "pdq", False) for k in range(2)])
        case_store.publish_case(db, case_id, [(2 * c, 6), (2 * c + 1, 6)])
    # Day T0: entries 0 and 2 under review (published 30 s before: "< 1 min"), entry 4 not violating.
    receive(db, [(0, "matched-pending-review"), (2, "matched-pending-review"), (4, "not-violating")], NOON, entries)
    # Day T0 + 3: entry 0 removed (counted in day T0's cohort), entry 1 removed (a new first verdict).
    receive(db, [(0, "removed"), (1, "removed"), (1, "removed")], NOON + 3 * DAY, entries)
    outcomes = stats.outcomes(db, None)[PLATFORM]
    assert outcomes["entries_answered"] == 4 and outcomes["entries_removed"] == 2
    assert outcomes["cases_answered"] == 3 and outcomes["cases_removed"] == 1
    assert outcomes["wait:1m"] == 3 and "wait:6h" not in outcomes and outcomes["wait:7d"] == 1  # entry 1: 3 days
    by_day = {(d, m): n for p, d, m, n in db.execute("SELECT platform, day, measure, n FROM stats_outcomes_daily")}
    assert by_day[(20_000, "entries_removed")] == 1 and by_day[(20_003, "entries_removed")] == 1
    assert by_day[(20_000, "cases_removed")] == 1  # case 0 first answered on day T0, removed later
    # Only the cohort of the last 2 days: entry 1 (first answered and removed on T0 + 3).
    recent = stats.outcomes(db, 20_002)[PLATFORM]
    assert recent["entries_answered"] == 1 and recent["entries_removed"] == 1 and "cases_answered" not in recent

    class Config:
        class node:
            origin, role = OWN, "helpline"

        class cases:
            per_day = 500

    f = node_figures(db, Config, "all", now=NOON + 3 * DAY)
    t = f["takedown"][PLATFORM]
    assert (t["case_rate"], t["fingerprint_rate"]) == (33.3, 50.0)
    assert f["verdicts_received"][PLATFORM]["totals"] == {"matched-pending-review": 2, "removed": 3,
                                                          "not-violating": 1, "disputed-false-match": 0}
    assert f["log"]["fingerprints_published"] == {"pdq": 6}
    assert f["cases"]["creation"]["limits"] == [{"name": "per_day", "scope": "node", "per_seconds": 86400,
                                                 "limit": 500}]
    from node.web.console.page import render_console

    page = render_console(f, "fr")
    assert "tout le nœud" in page and "33,3\u202f%" in page and "<script" not in page


def test_summaries_count_a_range_once(db):
    follow_store.add_log(db, PLATFORM, "http://p", Signer.generate(PLATFORM).verifier_key())
    entries = submissions(2)
    publish_own(db, entries, NOON)
    receive(db, [(0, "removed"), (1, "matched-pending-review")], NOON, entries)
    with db.atomic():
        stats.summarise_feedback(db, PLATFORM, 0, 2, NOON, OWN)  # again: nothing changes
    assert stats.feedback_totals(db) == [(PLATFORM, "matched-pending-review", 1), (PLATFORM, "removed", 1)]
    assert stats.outcomes(db, None)[PLATFORM]["entries_answered"] == 2


def test_feedback_with_a_wrong_leaf_hash_counts_as_received_not_as_an_outcome(db):
    follow_store.add_log(db, PLATFORM, "http://p", Signer.generate(PLATFORM).verifier_key())
    entries = submissions(1)
    publish_own(db, entries, NOON)
    batch = [encode_entry(Feedback(OWN, 0, b"\7" * 32, "removed"))]
    with db.atomic():
        follow_store.reset_staging(db, PLATFORM)
        stage_entries(db, PLATFORM, 0, batch, [leaf_hash(e) for e in batch])
        apply_staged(db, PLATFORM, "", OWN, now=NOON)
    assert stats.feedback_totals(db) == [(PLATFORM, "removed", 1)]
    assert stats.outcomes(db, None) == {}


def test_the_migration_summarises_an_older_database_like_the_live_path(tmp_path, db):
    # The live path (its own entries are counted on the day they are stored: today).
    import time

    now = time.time()
    follow_store.add_log(db, PLATFORM, "http://p", Signer.generate(PLATFORM).verifier_key())
    entries = submissions(4)
    publish_own(db, entries, now)
    receive(db, [(0, "removed"), (1, "matched-pending-review")], now + 10, entries)
    for i, state in enumerate(("active", "withdrawn", "pending")):
        case_id = case_store.insert_pending_case(db, bytes([i]) * 32, b"s", b"h", "p", 20_000, [])
        if state != "pending":
            case_store.publish_case(db, case_id, [])
        if state == "withdrawn":
            case_store.mark_withdrawn(db, case_id, 20_002)
    # An older database: everything but the stats area, the same rows, then the migration.
    old = connect(tmp_path / "old.db")
    migrate(old, [m for m in area_modules() if m.AREA != "stats"])
    old.execute("INSERT INTO log_entries (idx, data, leaf_hash) VALUES " + ",".join(["(?, ?, ?)"] * 4),
                [v for i, e in enumerate(entries) for v in (i, e, leaf_hash(e))])
    old.execute("INSERT INTO log_checkpoints VALUES (4, ?, ?, ?)", (b"\0" * 32, f"{OWN}\n4\n".encode(), now))
    follow_store.add_log(old, PLATFORM, "http://p", Signer.generate(PLATFORM).verifier_key())
    for row in db.execute("SELECT * FROM follow_feedback"):
        old.execute("INSERT INTO follow_feedback VALUES (?, ?, ?, ?, ?, ?, ?)", row)
    old.execute("INSERT INTO followed_checkpoints VALUES (?, 2, ?, ?, ?)", (PLATFORM, b"\0" * 32, b"n", now + 10))
    for row in db.execute("SELECT * FROM cases"):
        old.execute(f"INSERT INTO cases VALUES ({','.join('?' * len(row))})", row)
    migrate(old)
    for table in ("stats_log_daily", "stats_verdicts_daily", "stats_outcomes_daily", "stats_entry_verdicts",
                  "stats_case_daily"):
        assert old.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall() == \
            db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall(), table
    old.close()


def test_windows():
    now = T0 + 5
    assert since_day("7d", now) == 20_000 - 6 and since_day("30d", now) == 20_000 - 29
    assert since_day("all", now) is None and since_day("90d", now) == 20_000 - 89
    assert since_day("2024-01-01", now) == 19_723
    for bad in ("yesterday", "0d", "7", "-7d", "2024-13-01", "999999d"):
        with pytest.raises(WindowError):
            since_day(bad, now)


def test_case_counts_follow_every_change_of_state(db):
    ids = [case_store.insert_pending_case(db, bytes([i]) * 32, b"s", b"h", "p", 20_000 + i % 2, []) for i in range(5)]
    assert stats.case_totals(db) == {"opened": 0, "withdrawn": 0}  # pending: nobody has a number yet
    for case_id in ids[:4]:
        case_store.publish_case(db, case_id, [])
    case_store.abandon_case(db, ids[4], {})
    case_store.mark_withdrawn(db, ids[0], 20_005)
    case_store.mark_withdrawn(db, ids[0], 20_006)  # already withdrawn: not counted again
    case_store.publish_case(db, ids[1], [])  # published again: not counted again
    assert stats.case_totals(db) == {"opened": 4, "withdrawn": 1}
    assert stats.cases_per_day(db, None) == {20_000: {"opened": 2, "withdrawn": 0},
                                             20_001: {"opened": 2, "withdrawn": 0},
                                             20_005: {"opened": 0, "withdrawn": 1}}
    assert stats.cases_per_day(db, 20_001) == {20_001: {"opened": 2, "withdrawn": 0},
                                               20_005: {"opened": 0, "withdrawn": 1}}
    counted = db.execute("SELECT state, COUNT(*) FROM cases GROUP BY state ORDER BY state").fetchall()
    assert counted == [("abandoned", 1), ("active", 3), ("withdrawn", 1)]


def test_creation_limits_read_from_the_configuration():
    from types import SimpleNamespace

    from node.figures import creation_limits

    assert creation_limits(SimpleNamespace(cases=SimpleNamespace(max_fingerprints=100))) == []
    config = SimpleNamespace(cases=SimpleNamespace(per_address_per_hour=3, per_day=500, per_hour=True))
    assert creation_limits(config) == [
        {"name": "per_address_per_hour", "scope": "address", "per_seconds": 3600, "limit": 3},
        {"name": "per_day", "scope": "node", "per_seconds": 86400, "limit": 500}]
