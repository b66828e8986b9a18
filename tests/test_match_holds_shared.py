"""Holds decided once (issue 17): a platform run as two `serve` processes on one
PostgreSQL database follows a helpline. Only the sequencing process decides holds:
a log beyond its hourly budget is held once (the intake counted once, as one process
counts it), a dense cluster is held once (one cluster row, one set of holds); neither
process ever matches a held fingerprint, not even for a moment, and both match them
once they are let in."""

from __future__ import annotations

import json
import secrets
import time

import numpy as np
import psycopg
import pytest

from follow_support import near_copies
from multi_support import ServeProcess, request, run_ncii, shared_datadir
from test_cases_cycle import Node
from test_match_replicas import HELPLINE, PLATFORM, matches
from test_pg_shared import admin_post, match_status

pytestmark = pytest.mark.timeout(180)


def append_many(node: Node, lines: list[dict]) -> list[int]:
    token = (node.root / "admin.token").read_text().strip()
    status, body = request(node.admin_url + "/admin/append", b"".join(json.dumps(x).encode() + b"\n" for x in lines),
                           {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
    assert status == 200, body
    return [json.loads(line)["index"] for line in body.splitlines()]


def watch(processes, held: dict[int, str], until, seconds: float = 40.0, pg_url: str | None = None) -> None:
    """Poll both processes until `until()`: no held index ever comes back in a match
    (`pg_url`: of `held`, those the database holds at the time, read before the query)."""
    started = time.monotonic()
    while not until():
        assert time.monotonic() - started < seconds, f"not settled in time: {[match_status(p)['held'] for p in processes]}"
        if pg_url is not None:
            with psycopg.connect(pg_url) as conn:
                now = {row[0] for row in conn.execute("SELECT idx FROM match_holds WHERE origin = %s", (HELPLINE,))}
        for process in processes:
            for index, fingerprint in held.items():
                if pg_url is not None and index not in now:
                    continue
                found = matches(process, fingerprint) or []
                assert index not in found, f"{process.name} matched held entry {index}"


def test_holds_are_decided_once_and_refused_everywhere(tmp_path, pg_url):
    helpline = Node(tmp_path / "helpline", HELPLINE, "helpline")
    root = shared_datadir(tmp_path, pg_url, role="platform", origin=PLATFORM)
    config = (root / "config.toml").read_text()
    for old, new in (("cluster_size = 1000", "cluster_size = 16"), ("cluster_keep = 16", "cluster_keep = 1")):
        assert old in config, old
        config = config.replace(old, new)
    (root / "config.toml").write_text(config)
    run_ncii("readers", "add", "--dir", str(helpline.root), run_ncii("key", "--dir", str(root), "--request").strip())
    a = b = None
    try:
        helpline.start()
        a, b = ServeProcess(root, "a").start(), ServeProcess(root, "b").start()
        admin_post(b, "/v1/match/budget", {"origin": HELPLINE, "max_per_hour": 2})
        run_ncii("follow", "add", "--dir", str(root), helpline.url, "--vkey",
                 run_ncii("key", "--dir", str(helpline.root)).strip(), "--interval", "0.2")

        # Five fingerprints against a budget of two an hour: three held, once.
        prints = [secrets.token_hex(32) for _ in range(5)]
        indices = append_many(helpline, [{"kind": "submission", "signal": "pdq", "fingerprint": p} for p in prints])
        by_index = dict(zip(indices, prints))
        held_budget = dict(list(by_index.items())[2:])
        watch((a, b), held_budget, lambda: all(match_status(p)["held"]["budget"] == 3 for p in (a, b))
              and all(matches(p, prints[1]) == [indices[1]] for p in (a, b)))
        with psycopg.connect(pg_url) as conn:
            intake = conn.execute("SELECT COALESCE(SUM(count), 0) FROM match_intake WHERE origin = %s",
                                  (HELPLINE,)).fetchone()[0]
            holds = conn.execute("SELECT COUNT(*) FROM match_holds WHERE origin = %s AND reason = 'budget'",
                                 (HELPLINE,)).fetchone()[0]
        assert (intake, holds) == (2, 3)  # counted once (two processes deciding: 4 and more)
        for index, fingerprint in held_budget.items():
            assert matches(a, fingerprint) == [] and matches(b, fingerprint) == []
        admin_post(a, "/v1/match/budget", {"origin": HELPLINE, "max_per_hour": None})
        for process in (a, b):
            watch((), {}, lambda: all(matches(process, p) == [i] for i, p in held_budget.items()), 10)

        # Forty near-copies of one picture: a cluster, held once, its first member kept.
        # (They match as they come until the cluster forms, as in one process; once the
        # database holds one, neither process matches it.)
        rng = np.random.default_rng(17)
        centre = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        copies = [fp.hex() for fp in near_copies(rng, centre, 40, 6)]
        cluster = append_many(helpline, [{"kind": "submission", "signal": "pdq", "fingerprint": p} for p in copies])

        def held_in_db() -> int:
            with psycopg.connect(pg_url) as conn:
                return conn.execute("SELECT COUNT(*) FROM match_holds WHERE origin = %s AND reason = 'cluster'",
                                    (HELPLINE,)).fetchone()[0]

        watch((a, b), dict(zip(cluster, copies)),
              lambda: held_in_db() > 0 and all(match_status(p)["held"]["clusters"] == 1 and
                                               match_status(p)["held"]["cluster"] == held_in_db() for p in (a, b)),
              pg_url=pg_url)
        with psycopg.connect(pg_url) as conn:
            clusters = conn.execute("SELECT id FROM match_clusters WHERE origin = %s", (HELPLINE,)).fetchall()
            held = [row[0] for row in conn.execute(
                "SELECT idx FROM match_holds WHERE origin = %s AND reason = 'cluster'", (HELPLINE,))]
        assert len(clusters) == 1 and len(held) >= 39 - 16  # one cluster, one set of holds
        query = copies[0]
        for process in (a, b):
            assert not set(held) & set(matches(process, query) or [])

        # Released through b: both match every copy.
        admin_post(b, "/v1/match/release", {"cluster": clusters[0][0]})
        for process in (a, b):
            watch((), {}, lambda: sorted(matches(process, query) or []) == sorted(cluster), 10)
    finally:
        for process in (a, b):
            if process is not None:
                process.stop()
        helpline.stop()
