"""A fork found by the follower's own round yields a portable evidence file.

Real HTTP on 127.0.0.1 (follow_support.LogServer), real SQLite, logs built and signed
with protocol/ code. For every kind of fork the file lands in DIR/evidence with a safe
name and mode 0644, `ncii-node audit verify-evidence` accepts it, and `status` names it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import sys
from pathlib import Path

import pytest
from follow_support import Harness, LogServer, StaticLog, pdq_entry

from node.follow.forks import evidence_file_name, origin_safe_name, tiles_for_evidence
from node.follow.status import format_report, status_report
from node.follow.sync import ForkDetected
from protocol.merkle import consistency_proof, leaf_hash, node_hash, range_hash, root_of
from protocol.tiles import TileNodes, build_tile, tiles_for_size, verify_tiles

REPO = Path(__file__).resolve().parents[1]


async def verify_evidence_cli(path: Path) -> tuple[int, str]:
    """The real `ncii-node audit verify-evidence FILE`, in a subprocess."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "node", "audit", "verify-evidence", str(path),
                                                cwd=REPO, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


@pytest.fixture
async def followed(tmp_path):
    # An origin with a slash and odd characters: the file name must stay inside DIR/evidence.
    log = StaticLog("evil.example/../log_wïth\\back")
    server = await LogServer(log).start()
    harness = Harness(tmp_path, timeout=1.0)
    harness.follow(log.origin, server.url, log.vkey)
    yield harness, log, server
    await harness.close()
    await server.stop()


def test_evidence_file_names_never_leave_the_directory():
    for origin in ["a/b", "../../etc/passwd", "/", ".", "x\\y", "ünï/cödé", "a" * 300]:
        name = evidence_file_name(origin, 7, 3)
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert name.endswith("-3-7.json") and len(name) < 100
    assert origin_safe_name("a/b") != origin_safe_name("a_b")  # a hash keeps them apart


def test_tiles_for_evidence_hold_the_proof_and_verify():
    """The few tiles fetched for evidence verify on their own against the root and
    hold both the old root and the consistency proof, at tile borders too."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(70_000)]
    levels = [leaves]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        levels.append([node_hash(prev[i], prev[i + 1]) for i in range(0, len(prev) - 1, 2)])

    def node_at(level, index):
        return levels[level][index]

    rng = random.Random(9)
    pairs = [(1, 2), (255, 256), (256, 257), (256, 65_536), (65_536, 65_537), (65_535, 70_000), (300, 70_000)]
    pairs += [tuple(sorted(rng.sample(range(1, 70_000), 2))) for _ in range(6)]
    for small, size in pairs:
        wanted = tiles_for_evidence(small, size)
        assert len(wanted) < 40
        tiles = {t: build_tile(t.level, t.index, size, node_at) for t in wanted}
        verify_tiles(size, root_of(leaves[:size]), tiles)
        nodes = TileNodes(size, tiles)
        assert range_hash(0, small, nodes) == root_of(leaves[:small])
        assert consistency_proof(small, size, nodes) == consistency_proof(small, size, leaves[:size])
    assert set(tiles_for_evidence(0, 300)) <= set(tiles_for_size(300))


async def test_same_size_fork_evidence_and_status(followed):
    harness, log, server = followed
    log.append(*[pdq_entry(i) for i in range(40)])
    await harness.followers[log.origin].sync_once()
    # (as if that checkpoint had been verified an hour before the fork shows up)
    harness.db.execute("UPDATE followed_logs SET verified_at = verified_at - 3600")
    server.checkpoint = log.sign(40, bytes(32))
    with pytest.raises(ForkDetected):
        await harness.followers[log.origin].sync_once()
    path, verified = harness.evidence(log.origin)
    assert path.name == evidence_file_name(log.origin, 40, 40) and verified.kind == "same-size"
    code, out = await verify_evidence_cli(path)
    assert code == 0, out

    report = status_report(harness.db)
    [entry] = report["logs"]
    assert entry["forked"] and entry["fork_evidence"] == str(path) and entry["fork_source"] == "follower"
    assert entry["fork_evidence_problem"] is None
    text = format_report(report)
    assert text.startswith(f"!!! FORK: log {log.origin}") and str(path) in text.splitlines()[0]
    # the earlier note is dated when it was verified, not when the fork was found
    verified_at = harness.db.execute("SELECT verified_at FROM followed_logs").fetchone()[0]
    first = json.loads(path.read_text())["observed"][0]
    assert first["at"] == datetime.datetime.fromtimestamp(verified_at, datetime.timezone.utc).isoformat(
        timespec="seconds")


@pytest.mark.parametrize("old,new", [(1, 2), (256, 513), (300, 700), (511, 1030)])
async def test_rewritten_history_evidence_from_the_fetched_tiles(followed, old, new):
    """A bigger tree whose first `old` entries differ: the consistency proof in the
    evidence is read from the tiles the follower fetched and verified in that round."""
    harness, log, server = followed
    log.append(*[pdq_entry(i) for i in range(old)])
    await harness.followers[log.origin].sync_once()
    forged = StaticLog(log.origin, log.signer)
    entries = list(log.entries)
    entries[old - 1] = pdq_entry(10**9)
    forged.append(*entries, *[pdq_entry(i) for i in range(old, new)])
    server.log = forged
    requests_before = len(server.requests)
    with pytest.raises(ForkDetected, match="does not extend"):
        await harness.followers[log.origin].sync_once()
    path, verified = harness.evidence(log.origin)
    assert verified.kind == "consistency" and (verified.smaller.size, verified.larger.size) == (old, new)
    assert path.name == evidence_file_name(log.origin, old, new)
    # No tile was fetched again to build it.
    assert not [p for p in server.requests[requests_before:] if p.startswith("tile/") and
                server.requests[requests_before:].count(p) > 1]
    doc = json.loads(path.read_text())
    assert doc["checkpoints"] == [log.note.decode(), forged.note.decode()]
    if old == 300:
        code, out = await verify_evidence_cli(path)
        assert code == 0, out


async def test_two_forks_of_one_size_pair_keep_two_files(followed, tmp_path):
    """A second, different pair of the same sizes (after re-following) gets its own file."""

    harness, log, server = followed
    log.append(*[pdq_entry(i) for i in range(10)])
    await harness.followers[log.origin].sync_once()
    server.checkpoint = log.sign(10, bytes(32))
    with pytest.raises(ForkDetected):
        await harness.followers[log.origin].sync_once()
    first, _ = harness.evidence(log.origin)
    harness.db.follow.remove_log(log.origin)
    harness.db.follow.add_log(log.origin, server.url, log.vkey)
    server.checkpoint = None
    await harness.followers[log.origin].sync_once()
    server.checkpoint = log.sign(10, bytes([1]) * 32)
    with pytest.raises(ForkDetected):
        await harness.followers[log.origin].sync_once()
    second, verified = harness.evidence(log.origin)
    assert second != first and first.exists() and verified.kind == "same-size"
    assert sorted(p.name for p in harness.evidence_dir.iterdir()) == sorted([first.name, second.name])
