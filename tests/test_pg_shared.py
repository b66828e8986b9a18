"""Several `serve` processes of one node on one PostgreSQL database behave as one node
(issue 17): a signed read replayed to another process is refused as a replay to the
same process is; a setting made through one process is in force in the others within
about a second; the commands reach the node while any of its processes lives."""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import subprocess
import sys
import time

import psycopg
import pytest

from multi_support import REPO, ServeProcess, request, run_ncii, shared_datadir, submission
from node.datadir import DataDir
from node.readaccess import RequestSigner
from node.store import open_db

pytestmark = pytest.mark.timeout(180)
TILE = "/tile/0/000.p/1"
NAME = "multi.example"   # the node's public name (its origin's host): signed reads go to it


def register_reader(pg_url: str) -> RequestSigner:
    signer = RequestSigner.from_seed("reader.shared.example/log", b"\1" * 32)
    db = open_db(pg_url)
    try:
        db.readers.add_reader(signer.keyid, "a reader", b"\0\0\0\0")
    finally:
        db.close()
    return signer


def signed_get(process: ServeProcess, headers: dict) -> tuple[int, bytes]:
    """GET the tile from `process`, sent to the node's public name (as through nginx)."""
    return request(process.public_url + TILE, headers={"Host": NAME, **headers}, timeout=10)


def test_a_signed_read_replayed_to_another_process_is_refused(tmp_path, pg_url):
    signer = register_reader(pg_url)
    root = shared_datadir(tmp_path, pg_url, public_read=False)
    a, b = ServeProcess(root, "a").start(), ServeProcess(root, "b").start()
    try:
        assert a.append(submission(0)) is not None
        for process in (a, b):  # the other process serves the new checkpoint within ~0.5 s
            in_force_within(f"{process.name} serves the checkpoint", lambda: request(
                process.public_url + "/checkpoint")[1].split(b"\n")[1] == b"1", 30)
        url = f"http://{NAME}{TILE}"
        # The reference: a replay to the same process.
        first = signer.sign_headers("GET", url)
        assert signed_get(a, first)[0] == 200
        same_process = signed_get(a, first)
        assert same_process[0] == 401 and b"already used" in same_process[1]
        # Accepted by B, replayed to A; accepted by A, replayed to B: the same refusal.
        for accepting, replayed_to in ((b, a), (a, b)):
            headers = signer.sign_headers("GET", url)
            assert signed_get(accepting, headers)[0] == 200
            assert signed_get(replayed_to, headers) == same_process
        # Sent to both at the same moment: exactly one of the two serves it, every time.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for _ in range(20):
                headers = signer.sign_headers("GET", url)
                answers = list(pool.map(lambda p: signed_get(p, headers), (a, b)))
                assert sorted(status for status, _ in answers) == [200, 401], answers
                assert same_process in answers
        # Fresh signatures still pass on both.
        for process in (a, b):
            assert signed_get(process, signer.sign_headers("GET", url))[0] == 200
    finally:
        a.stop()
        b.stop()


def test_processes_starting_together_share_one_digest_key(pg_url):
    """Both found no journal (they started at the same moment): the second to create it
    takes the first's key, so a nonce either accepted is refused by the other."""
    from node.replaycache import ReplayCache, ReplayRefused
    from node.store.replay import DatabaseJournals

    class FoundNone(DatabaseJournals):
        def read(self):
            return None

    first, second = ReplayCache(), ReplayCache()
    first.open_journal(FoundNone(pg_url), 1000.0, 10.0)
    second.open_journal(FoundNone(pg_url), 1000.0, 10.0)
    try:
        first.check_and_add("reader", "nonce-1", 1041, 1000.5)
        with pytest.raises(ReplayRefused) as refused:
            second.check_and_add("reader", "nonce-1", 1041, 1000.6)
        assert not refused.value.full
        second.check_and_add("reader", "nonce-2", 1041, 1000.7)
        with pytest.raises(ReplayRefused):
            first.check_and_add("reader", "nonce-2", 1041, 1000.8)
    finally:
        first.close()
        second.close()


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "node", *args], cwd=REPO, env=env, text=True, input=stdin,
                          capture_output=True, timeout=120)


def test_the_commands_reach_the_node_while_any_process_lives(tmp_path, pg_url):
    """serve.json names the process started last; killed -9, the commands reach the other."""
    root = shared_datadir(tmp_path, pg_url)
    a, b = ServeProcess(root, "a").start(), ServeProcess(root, "b").start()
    try:
        served = DataDir(root).serving_processes()
        assert [info["pid"] for info in served] == [b.process.pid, a.process.pid]
        first = run_cli("append", "--dir", str(root), stdin=json.dumps(submission(1)) + "\n")
        assert first.returncode == 0, first.stderr
        b.kill()
        assert json.loads((root / "serve.json").read_text())["pid"] == b.process.pid  # left behind by -9
        assert DataDir(root).serving_node()["pid"] == a.process.pid
        second = run_cli("append", "--dir", str(root), stdin=json.dumps(submission(2)) + "\n")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["index"] == json.loads(first.stdout)["index"] + 1
        status = json.loads(run_cli("status", "--dir", str(root), "--json").stdout)
        assert status["node"]["serving"] is True
        # A third process cleans what the killed one left; stopping it cleanly hands
        # serve.json back to the one still serving.
        c = ServeProcess(root, "c").start()
        assert sorted(p.name for p in (root / "serve.d").iterdir()) == sorted(
            f"{pid}.json" for pid in (a.process.pid, c.process.pid))
        c.stop()
        assert json.loads((root / "serve.json").read_text())["pid"] == a.process.pid
        a.stop()
        assert not (root / "serve.json").exists() and not list((root / "serve.d").iterdir())
        refused = run_cli("append", "--dir", str(root), stdin=json.dumps(submission(3)) + "\n")
        assert refused.returncode == 1 and "no node is serving" in refused.stderr
    finally:
        a.stop()
        b.stop()


def near(fingerprint: str) -> str:
    """A PDQ fingerprint one bit away."""
    return fingerprint[:-1] + format(int(fingerprint[-1], 16) ^ 1, "x")


def admin_post(process: ServeProcess, path: str, body: dict) -> dict:
    status, answer = request(process.admin_url + path, json.dumps(body).encode(),
                             {"Authorization": f"Bearer {process.admin_token}", "Content-Type": "application/json"})
    assert status == 200, answer
    return json.loads(answer)


def match_status(process: ServeProcess) -> dict:
    status, body = request(process.admin_url + "/v1/match/status",
                           headers={"Authorization": f"Bearer {process.admin_token}"})
    assert status == 200, body
    return json.loads(body)


def in_force_within(what: str, probe, seconds: float = 3.0) -> float:
    """Seconds until probe() holds (at most `seconds`: ~1 s asked, slack for a loaded machine)."""
    started = time.monotonic()
    while not probe():
        assert time.monotonic() - started < seconds, f"{what}: not in force after {seconds} s"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_setting_made_through_one_process_is_in_force_in_the_other(tmp_path, pg_url):
    from test_match_replicas import HELPLINE, PLATFORM, admin_append, matches
    from test_cases_cycle import Node

    helpline = Node(tmp_path / "helpline", HELPLINE, "helpline")
    root = shared_datadir(tmp_path, pg_url, role="platform", origin=PLATFORM)
    run_ncii("readers", "add", "--dir", str(helpline.root), run_ncii("key", "--dir", str(root), "--request").strip())
    a = b = None
    try:
        helpline.start()
        a, b = ServeProcess(root, "a").start(), ServeProcess(root, "b").start()
        run_ncii("follow", "add", "--dir", str(root), helpline.url, "--vkey",
                 run_ncii("key", "--dir", str(helpline.root)).strip(), "--interval", "0.2")
        s1, s2, s3 = ({"kind": "submission", "signal": "pdq", "fingerprint": secrets.token_hex(32)} for _ in range(3))
        i1, i2 = (admin_append(helpline, s)["index"] for s in (s1, s2))
        for process in (a, b):
            in_force_within(f"{process.name} matches", lambda: matches(process, s2["fingerprint"]) == [i2], 30)
        times = {}

        # A threshold through the command (it reaches b, started last): in force in a.
        assert matches(a, near(s1["fingerprint"])) == [i1]
        assert run_cli("match-threshold", "--dir", str(root), HELPLINE, "0").returncode == 0
        times["threshold"] = in_force_within("threshold 0 in a", lambda: matches(a, near(s1["fingerprint"])) == [])
        assert matches(a, s1["fingerprint"]) == [i1]
        assert run_cli("match-threshold", "--dir", str(root), HELPLINE, "default").returncode == 0
        in_force_within("the default threshold in a", lambda: matches(a, near(s1["fingerprint"])) == [i1])

        # A suppression through a's admin site: b stops matching the entry.
        admin_post(a, "/v1/match/suppress", {"origin": HELPLINE, "index": i1, "feedback": False})
        times["suppression"] = in_force_within("the suppression in b", lambda: matches(b, s1["fingerprint"]) == [])

        # A budget through a: b holds what is beyond it...
        # (b takes the budget long before the helpline's next entry reaches it: that is
        # published, then fetched by a's follower, which tells b after its round.)
        admin_post(a, "/v1/match/budget", {"origin": HELPLINE, "max_fingerprints": 1})
        i3 = admin_append(helpline, s3)["index"]
        for process in (a, b):
            in_force_within(f"{process.name} holds the entry beyond the budget",
                            lambda: match_status(process)["held"]["budget"] == 1, 30)
        assert matches(a, s3["fingerprint"]) == [] and matches(b, s3["fingerprint"]) == []
        # ... and raised through b, a indexes what b let in.
        admin_post(b, "/v1/match/budget", {"origin": HELPLINE, "max_fingerprints": None})
        times["budget raised"] = in_force_within("the raised budget in a",
                                                 lambda: matches(a, s3["fingerprint"]) == [i3])
        assert matches(b, s3["fingerprint"]) == [i3] and match_status(a)["held"]["budget"] == 0
        # A change whose notification was missed: the look every second finds it.
        with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
            conn.execute("INSERT INTO match_thresholds (origin, pdq_threshold) VALUES (%s, 0)", (HELPLINE,))
            conn.execute("UPDATE match_settings_version SET version = version + 1")
        times["unnotified threshold"] = max(
            in_force_within(f"the unnotified threshold in {process.name}",
                            lambda: matches(process, near(s2["fingerprint"])) == []) for process in (a, b))
        print("\nset through one process -> in force in the other: " +
              ", ".join(f"{what} {seconds:.3f} s" for what, seconds in times.items()))
    finally:
        for process in (a, b):
            if process is not None:
                process.stop()
        helpline.stop()
