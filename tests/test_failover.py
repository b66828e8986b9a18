"""Failover (issue 17): two `serve` processes of one helpline on one PostgreSQL
database, a steady stream of appends and cases sent to both, and the sequencing
process killed (-9) at random moments, five times (each time started again, so two
processes run). Then: every acknowledged entry is in the log at its index, every
checkpoint an observer saw on either process is consistent with the log (its root is
the root of the log's first `size` entries: one log, never a fork), and the takeover
times are printed (kill -> the other holds the lease; kill -> the next checkpoint)."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time

import pytest

from multi_support import ServeProcess, request, shared_datadir, submission
from test_cases_cycle import wait_for
from node.store import open_db
from protocol.edge import TreeEdge
from protocol.merkle import leaf_hash
from protocol.entries import entry_and_bytes_from_json

pytestmark = pytest.mark.timeout(240)
KILLS = 5
YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}


def parse_note(note: bytes) -> tuple[int, bytes]:
    import base64
    lines = note.decode().split("\n")
    return int(lines[1]), base64.b64decode(lines[2])


class Traffic:
    """Appends (admin site) and cases (public site) to whichever processes are up, and an
    observer of every checkpoint they serve."""

    def __init__(self, processes: list[ServeProcess]):
        self.processes = processes
        self.stop = threading.Event()
        self.acked: dict[int, bytes] = {}        # index -> entry bytes
        self.cases: list[tuple[list[int], list[str]]] = []
        self.seen: dict[int, bytes] = {}         # size -> root, from every served checkpoint
        self.forks: list[str] = []
        self.lock = threading.Lock()
        self.counter = itertools.count()
        self.threads = [threading.Thread(target=self._appends, daemon=True) for _ in range(2)]
        self.threads += [threading.Thread(target=self._cases, daemon=True),
                         threading.Thread(target=self._observe, daemon=True)]

    def live(self) -> list[ServeProcess]:
        return [p for p in self.processes if p.alive and p.public_url]

    def _appends(self) -> None:
        while not self.stop.is_set():
            live = self.live()
            if not live:
                time.sleep(0.05)
                continue
            line = submission(next(self.counter))
            _, data = entry_and_bytes_from_json(line)
            ack = random.choice(live).append(line)
            if ack is not None:
                assert ack["leaf_hash"] == leaf_hash(data).hex()
                with self.lock:
                    assert ack["index"] not in self.acked, "an index acknowledged twice"
                    self.acked[ack["index"]] = data
            time.sleep(0.01)

    def _cases(self) -> None:
        while not self.stop.is_set():
            live = self.live()
            if not live:
                time.sleep(0.05)
                continue
            n = next(self.counter)
            fingerprints = [submission(n)["fingerprint"]]
            body = {"eligibility": YES, "lang": "en",
                    "fingerprints": [{"signal": "pdq", "fingerprint": f, "quality": 95} for f in fingerprints]}
            try:
                status, raw = request(random.choice(live).public_url + "/v1/cases", json.dumps(body).encode(),
                                      {"Content-Type": "application/json"}, timeout=90,
                                      source=f"127.0.{n % 200 + 1}.{n % 250 + 2}")
            except OSError:
                continue
            if status == 201:
                with self.lock:
                    self.cases.append(([p["index"] for p in json.loads(raw)["published"]], fingerprints))
            time.sleep(0.05)

    def _observe(self) -> None:
        while not self.stop.is_set():
            for process in self.live():
                try:
                    status, note = request(process.public_url + "/checkpoint", timeout=2)
                except OSError:
                    continue
                if status == 200:
                    size, root = parse_note(note)
                    with self.lock:
                        if self.seen.setdefault(size, root) != root:
                            self.forks.append(f"two roots for size {size}")
            time.sleep(0.02)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(120)


def holder(processes: list[ServeProcess]) -> ServeProcess | None:
    for process in processes:
        if process.alive:
            health = process.health()
            if health and health.get("sequencer"):
                return process
    return None


def wait(what, probe, timeout):
    return wait_for(what, probe, timeout, step=0.02)


def test_kill_9_of_the_sequencer_five_times_loses_nothing(tmp_path, pg_url):
    root = shared_datadir(tmp_path, pg_url)
    processes = [ServeProcess(root, "a").start(), ServeProcess(root, "b").start()]
    lease_times, checkpoint_times = [], []
    try:
        wait("a sequencer", lambda: holder(processes), 10)
        with Traffic(processes) as traffic:
            for _ in range(KILLS):
                victim = wait("a sequencer", lambda: holder(processes), 15)
                time.sleep(random.uniform(0.3, 1.5))  # a random moment of the stream
                with traffic.lock:
                    size_before = max(traffic.seen, default=0)
                survivor = next(p for p in processes if p is not victim)
                killed = time.monotonic()
                victim.kill()
                wait("the survivor to take the lease", lambda: (survivor.health() or {}).get("sequencer"), 10)
                lease_times.append(time.monotonic() - killed)
                wait("a new checkpoint", lambda: max(traffic.seen, default=0) > size_before, 10)
                checkpoint_times.append(time.monotonic() - killed)
                victim.start()  # two processes again
            time.sleep(1.0)
        for process in processes:
            process.stop()

        db = open_db(pg_url)
        try:
            count = db.log.entry_count()
            stored = {index: bytes(data) for index, data, _ in db.log.iter_entries(0, count)}
            hashes = [bytes(h) for _, _, h in db.log.iter_entries(0, count)]
            latest = db.log.latest_checkpoint()
            assert db.log.stored_entries() == count and latest.size == count
        finally:
            db.close()
        assert not traffic.forks, traffic.forks
        assert len(traffic.acked) > 50 and traffic.cases, (len(traffic.acked), len(traffic.cases))
        for index, data in traffic.acked.items():
            assert stored.get(index) == data, f"acknowledged entry {index} is not in the log at its index"
        for indices, fingerprints in traffic.cases:
            for index, fingerprint in zip(indices, fingerprints):
                assert fingerprint in stored[index].hex(), f"a case's entry {index} is not in the log"
        edge, done = TreeEdge(), 0
        for size in sorted(traffic.seen):
            edge.append(hashes[done:size])
            done = size
            assert edge.root() == traffic.seen[size], f"the checkpoint of size {size} is not this log's"
        print(f"\nfailover: {KILLS} kill -9 of the sequencer, {len(traffic.acked)} appends and "
              f"{len(traffic.cases)} cases acknowledged, {len(traffic.seen)} checkpoints observed, log size {count}")
        print("takeover (kill -> lease held by the other), s: " + " ".join(f"{t:.2f}" for t in lease_times))
        print("takeover (kill -> next checkpoint), s:       " + " ".join(f"{t:.2f}" for t in checkpoint_times))
        assert max(checkpoint_times) < 5.0
    finally:
        for process in processes:
            process.kill()


def test_the_commands_reach_the_processes_of_a_postgresql_node(tmp_path, pg_url):
    """`ncii-node append` (like `cases` and `feedback`) finds a serving process of a
    PostgreSQL node, whose processes share DIR (a shared lock of DIR/lock)."""
    import subprocess
    import sys

    from multi_support import REPO
    root = shared_datadir(tmp_path, pg_url)
    processes = [ServeProcess(root, "a").start(), ServeProcess(root, "b").start()]
    try:
        result = subprocess.run([sys.executable, "-m", "node", "append", "--dir", str(root)], cwd=REPO,
                                input=json.dumps(submission(7)) + "\n", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.splitlines()[0])["index"] == 0
    finally:
        for process in processes:
            process.stop()
    result = subprocess.run([sys.executable, "-m", "node", "append", "--dir", str(root)], cwd=REPO,
                            input=json.dumps(submission(8)) + "\n", capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no node is serving" in result.stderr
