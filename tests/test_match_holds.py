"""Budgets and held clusters (node/matcher/holds.py): a followed log cannot slow matching.

On a real SQLite database and a real follower where it matters: a log that publishes
thousands of near-copies of one fingerprint has them held out of the index (its
earliest few still match), written down so a restart keeps them held, shown in
`ncii-node status`, and released by the operator; a real duplicate (one image from
several people) keeps matching; budgets hold back what exceeds them and let it in as
they allow. Every answer is checked against brute force over what should be indexed."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from node.cli import main as cli_main
from node.follow.status import format_report, status_report
from node.matcher.holds import Budget
from node.matcher.service import Matcher, Query
from node.store import follow as follow_store
from node.store import open_db
from protocol.entries import Submission, Withdrawal, encode_entry
from protocol.merkle import leaf_hash
from protocol.signals import PDQ
from follow_support import Harness, LogServer, StaticLog
from follow_support import near_copies as flips

HOSTILE, HONEST = "hostile.example/log", "honest.example/log"


def random_pdq(rng, n: int) -> list[bytes]:
    return [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(n)]


def insert(db, origin: str, rows: list[tuple[int, bytes]]) -> None:
    with db.atomic():
        for index, fingerprint in rows:
            entry = encode_entry(Submission("pdq", fingerprint, 90, (), 0))
            db.execute(follow_store.INSERT_FINGERPRINT, (origin, index, "pdq", fingerprint, 90, "", 0,
                                                         leaf_hash(entry)))


def expected(model: dict[tuple[str, int], bytes], query: bytes, threshold: int = 31) -> list[tuple]:
    return sorted((PDQ.distance(query, fp), origin, index) for (origin, index), fp in model.items()
                  if PDQ.distance(query, fp) <= threshold)


def answer(matcher: Matcher, query: bytes, limit: int = 10**6):
    result = matcher.match(Query("pdq", query), limit=limit)
    return [(h.distance, h.origin, h.index) for h in result.hits], result.total


@pytest.fixture
def scene(db_target):
    """A hostile log: 2,000 random fingerprints, a real duplicate (one picture submitted
    30 times, re-encoded: within 5 bits), then 5,000 copies of one fingerprint with 6
    bits flipped each. An honest log holding the same picture twice. In SQLite, then in
    PostgreSQL (the holds written to and read from it)."""
    rng = np.random.default_rng(19)
    path = db_target
    db = open_db(path)
    picture, target = random_pdq(rng, 2)
    hostile = random_pdq(rng, 2000) + flips(rng, picture, 30, 5) + flips(rng, target, 5000, 6)
    honest = random_pdq(rng, 500) + flips(rng, picture, 2, 3)
    insert(db, HOSTILE, list(enumerate(hostile)))
    insert(db, HONEST, list(enumerate(honest)))
    model = {(HOSTILE, i): fp for i, fp in enumerate(hostile)}
    model.update({(HONEST, i): fp for i, fp in enumerate(honest)})
    attack = [(HOSTILE, i) for i in range(2030, 7030)]
    yield {"db": db, "path": path, "rng": rng, "picture": picture, "target": target, "model": model,
           "attack": attack, "queries": random_pdq(rng, 8) + [picture, target]}
    db.close()


def indexed_model(scene, released: bool = False) -> dict:
    """What should match: everything but the held part of the attack (its earliest 16 stay)."""
    model = dict(scene["model"])
    if not released:
        for key in scene["attack"][16:]:
            del model[key]
    return model


def check(matcher, model, queries):
    for query in queries:
        hits, total = answer(matcher, query)
        assert hits == expected(model, query) and total == len(hits)
        nearest, total = answer(matcher, query, 5)
        assert nearest == expected(model, query)[:5] or total > 5 and [h[0] for h in nearest] == \
            [e[0] for e in expected(model, query)[:5]]
        assert total == len(expected(model, query))


def test_a_dense_cluster_is_held_at_build_and_restart_and_released_by_the_operator(scene, capsys):
    matcher = Matcher(pending_load=True)
    matcher.load(scene["path"])
    stats = matcher.stats()
    assert stats["held"]["cluster"] == 5000 - 16 and stats["held"]["clusters"] == 1
    assert stats["pdq"] == len(scene["model"]) - (5000 - 16)
    check(matcher, indexed_model(scene), scene["queries"])
    # the real duplicate matches from both logs: 30 + 2, far below the cluster threshold
    hits, total = answer(matcher, scene["picture"])
    assert total == 32 and {origin for _, origin, _ in hits} == {HOSTILE, HONEST}
    # written down: status says so loudly; a restart keeps the cluster out
    report = status_report(scene["db"])
    [cluster] = report["held_clusters"]
    assert cluster["origin"] == HOSTILE and cluster["members"] == 5000 - 16
    assert "!!! HELD CLUSTER" in format_report(report) and f"match-release --dir DIR {cluster['id']}" in \
        format_report(report)
    matcher.close()
    again = Matcher(pending_load=True)
    again.load(scene["path"])
    assert again.stats()["held"]["cluster"] == 5000 - 16
    check(again, indexed_model(scene), scene["queries"][-3:])
    # the operator releases it: the cluster matches, counted by structure, and stays released
    outcome = again.release_cluster(cluster["id"])
    assert outcome == {"cluster": cluster["id"], "origin": HOSTILE, "released": 5000 - 16, "indexed": 5000 - 16}
    assert again.release_cluster(cluster["id"]) is None
    _, total = answer(again, scene["target"], 100)
    assert total == 5000
    check(again, indexed_model(scene, released=True), scene["queries"][-2:])
    again.close()
    third = Matcher(pending_load=True)
    third.load(scene["path"])
    assert third.stats()["held"]["cluster"] == 0 and answer(third, scene["target"], 100)[1] == 5000
    third.close()
    assert not status_report(scene["db"])["held_clusters"]


def test_the_cluster_arrives_through_a_follower_and_is_held_as_it_comes(tmp_path):
    """A real follower over HTTP applies a hostile log round by round: the first large
    round makes the index group the copies and the matcher hold them; later copies
    join the held cluster before they are indexed. Unrelated queries stay exact."""
    async def scenario():
        rng = np.random.default_rng(4)
        log = StaticLog(HOSTILE)
        base = random_pdq(rng, 1500)
        log.append(*[encode_entry(Submission("pdq", fp, 90, (), 0)) for fp in base])
        server = await LogServer(log).start()
        matcher = Matcher(cluster_size=500, pending_load=True)
        harness = Harness(tmp_path, listener=matcher)
        matcher.load(harness.db_path)
        target = random_pdq(rng, 1)[0]
        copies = flips(rng, target, 3000, 6)
        queries = random_pdq(rng, 5) + base[:3]
        try:
            follower = harness.follow(log.origin, server.url, log.vkey)
            await follower.sync_once()
            for chunk in (copies[:2000], copies[2000:2600], copies[2600:]):
                log.append(*[encode_entry(Submission("pdq", fp, 90, (), 0)) for fp in chunk])
                await follower.sync_once()
            stats = matcher.stats()
            assert stats["held"]["cluster"] == 3000 - matcher.holds.cluster_keep
            assert stats["pdq"] == 1500 + matcher.holds.cluster_keep
            model = {(HOSTILE, i): fp for i, fp in enumerate(base)}
            model.update({(HOSTILE, 1500 + i): fp for i, fp in enumerate(copies[:matcher.holds.cluster_keep])})
            check(matcher, model, queries + [target])
            # stored and verified all the same
            assert harness.state(HOSTILE).size == 4500
            held = harness.db.matching.held_indices(HOSTILE, "cluster")
            assert held == list(range(1500 + matcher.holds.cluster_keep, 4500))
            # a withdrawn held entry stays out when the cluster is released
            log.append(encode_entry(Withdrawal((4499,))))
            await follower.sync_once()
            [cluster] = matcher.holds.clusters()
            outcome = matcher.release_cluster(cluster.id)
            assert outcome["released"] == 3000 - matcher.holds.cluster_keep
            assert outcome["indexed"] == outcome["released"] - 1
            assert matcher.match(Query("pdq", target), limit=10).total == 2999
        finally:
            await harness.close()
            await server.stop()

    asyncio.run(scenario())


def test_budgets_hold_back_what_exceeds_them_and_let_it_in_as_they_allow(scene):
    db, path = scene["db"], scene["path"]
    db.matching.set_budget(HONEST, {"max_fingerprints": 300})
    matcher = Matcher(pending_load=True, budget=Budget(max_per_hour=100_000, max_per_day=100_000))
    matcher.load(path)
    # at start-up the log holds only its budget; the rest waits, written down
    assert matcher.stats()["held"]["budget"] == 502 - 300
    assert db.matching.hold_counts()[HONEST]["budget"] == 202
    clock = [1_000_000.0]
    matcher.holds.clock = lambda: clock[0]
    # new entries of a log over its hourly budget wait for the next hour
    matcher.set_budget(HOSTILE, {"max_per_hour": 50})
    rng = np.random.default_rng(1)
    fresh = random_pdq(rng, 120)
    added = matcher.add_many(HOSTILE, [(10_000 + i, "pdq", fp) for i, fp in enumerate(fresh)])
    assert added == 50 and matcher.stats()["held"]["budget"] == 202 + 70
    assert answer(matcher, fresh[49])[1] == 1 and answer(matcher, fresh[50])[1] == 0
    insert(db, HOSTILE, [(10_000 + i, fp) for i, fp in enumerate(fresh)])
    clock[0] += 3600
    assert matcher.review_holds([HOSTILE]) == 50  # the next hour lets 50 more in
    assert answer(matcher, fresh[99])[1] == 1 and answer(matcher, fresh[100])[1] == 0
    # raising a budget indexes what it now allows, at once
    db.matching.set_budget(HONEST, {"max_fingerprints": None})
    matcher.set_budget(HONEST, {"max_fingerprints": None})
    assert db.matching.hold_counts().get(HONEST, {}).get("budget", 0) == 0
    assert answer(matcher, scene["model"][(HONEST, 501)])[1] >= 1
    matcher.close()


def test_budget_and_release_commands_offline(scene, tmp_path, capsys):
    root = tmp_path / "platform"
    assert cli_main(["init", "--dir", str(root), "--origin", "p.example/log", "--role", "platform"]) == 0
    db = open_db(root / "node.db")
    rng = np.random.default_rng(2)
    centre = random_pdq(rng, 1)[0]
    insert(db, HOSTILE, list(enumerate(flips(rng, centre, 1200, 6))))
    db.close()
    capsys.readouterr()
    assert cli_main(["match-budget", "--dir", str(root), HOSTILE, "--max-per-hour", "1000",
                     "--max-fingerprints", "default"]) == 0
    assert cli_main(["match-budget", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{HOSTILE}\tmax_fingerprints=20000000 (default)\tmax_per_hour=1000" in out
    assert cli_main(["match-budget", "--dir", str(root), HOSTILE, "--max-per-day", "-4"]) == 2
    # `match --local` answers from an index built here: the cluster held in memory only
    capsys.readouterr()
    assert cli_main(["match", "--dir", str(root), "--local", "--json", "--pdq", centre.hex()]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 16
    db = open_db(root / "node.db")
    assert db.matching.hold_counts() == {} and db.matching.clusters() == []
    db.close()
    # the node's build holds the cluster, written down; status lists it, the command releases it
    matcher = Matcher(pending_load=True)
    matcher.load(root / "node.db")
    assert matcher.stats()["held"]["cluster"] == 1200 - 16
    matcher.close()
    capsys.readouterr()
    assert cli_main(["status", "--dir", str(root), "--json"]) == 5  # 5: no node serves DIR
    [cluster] = json.loads(capsys.readouterr().out)["held_clusters"]
    assert cli_main(["match-release", "--dir", str(root), str(cluster["id"])]) == 0
    assert json.loads(capsys.readouterr().out)["released"] == 1200 - 16
    assert cli_main(["match-release", "--dir", str(root), str(cluster["id"])]) == 1
    assert "no held cluster" in capsys.readouterr().err


def test_another_process_takes_over_a_release_a_suppression_and_a_threshold(scene):
    """Two matchers built from one database, as two `serve` processes of a PostgreSQL
    node are: what the operator does through one, the other adopts from the database
    (Matcher.adopt_settings, which node/matcher/replica.py calls when the settings'
    counter moves), writing nothing itself."""
    first, second = Matcher(pending_load=True), Matcher(pending_load=True)
    first.load(scene["path"])
    second.load(scene["path"])
    db = scene["db"]
    version = db.matching.settings_version()
    [cluster] = first.holds.clusters()
    first.release_cluster(cluster.id)
    db.matching.add_suppression(HOSTILE, 0, db.follow.get_fingerprint(HOSTILE, 0).leaf_hash, False)
    first.suppress(HOSTILE, 0)
    db.matching.set_threshold(HONEST, 0)
    first.set_threshold(HONEST, 0)
    assert db.matching.settings_version() == version + 3
    assert answer(second, scene["target"], 100)[1] == 16  # not yet
    held_rows = db.execute("SELECT COUNT(*) FROM match_holds").fetchone()[0]
    assert second.adopt_settings(db) == 5000 - 16 + 1
    for matcher in (first, second):
        assert answer(matcher, scene["target"], 100)[1] == 5000
        assert (HOSTILE, 0) not in matcher and matcher.threshold_for(HONEST) == 0
        assert matcher.stats()["held"] == {"cluster": 0, "budget": 0, "clusters": 0, "logs": []}
    assert db.execute("SELECT COUNT(*) FROM match_holds").fetchone()[0] == held_rows
    assert second.adopt_settings(db) == 0  # nothing new: nothing changes
    first.close()
    second.close()
