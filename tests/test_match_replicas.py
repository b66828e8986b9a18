"""Match replicas (issue 17): a platform run as two `serve` processes on one PostgreSQL
database follows a helpline. One process follows (the sequencer); both match. A
submission the helpline publishes is matched by both; its withdrawal stops matching
in both (the time is printed); after the following process is killed (-9), the other
takes over the following and matches what the helpline publishes next."""

from __future__ import annotations

import json
import time

import pytest

from multi_support import ServeProcess, request, run_ncii, shared_datadir, submission
from test_cases_cycle import Node, wait_for

pytestmark = pytest.mark.timeout(180)
HELPLINE = "helpline.replica.example/log"
PLATFORM = "platform.replica.example/feedback"


def admin_append(node: Node, line: dict) -> dict:
    token = (node.root / "admin.token").read_text().strip()
    status, body = request(node.admin_url + "/admin/append", json.dumps(line).encode(),
                           {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
    assert status == 200, body
    return json.loads(body.splitlines()[0])


def matches(process: ServeProcess, fingerprint: str) -> list[int] | None:
    token = (process.root / "match.token").read_text().strip()
    try:
        status, body = request(process.admin_url + "/v1/match",
                               json.dumps({"signal": "pdq", "fingerprint": fingerprint}).encode(),
                               {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, timeout=5)
    except OSError:
        return None
    if status != 200:
        return None
    return [m["index"] for m in json.loads(body)["matches"] if m["origin"] == HELPLINE]


def until(what, probe, timeout=30.0):
    return wait_for(what, probe, timeout, step=0.01)


def test_both_processes_match_and_stop_matching_a_withdrawal(tmp_path, pg_url):
    helpline = Node(tmp_path / "helpline", HELPLINE, "helpline")
    platform_root = shared_datadir(tmp_path, pg_url, role="platform", origin=PLATFORM)
    run_ncii("readers", "add", "--dir", str(helpline.root),
             run_ncii("key", "--dir", str(platform_root), "--request").strip())
    processes = []
    try:
        helpline.start()
        processes = [ServeProcess(platform_root, "a").start(), ServeProcess(platform_root, "b").start()]
        run_ncii("follow", "add", "--dir", str(platform_root), helpline.url, "--vkey",
                 run_ncii("key", "--dir", str(helpline.root)).strip(), "--interval", "0.2")
        first = submission(1)
        index = admin_append(helpline, first)["index"]
        for process in processes:
            until(f"process {process.name} to match the submission",
                  lambda: matches(process, first["fingerprint"]) == [index])

        admin_append(helpline, {"kind": "withdrawal", "targets": [index]})
        withdrawn = time.monotonic()
        stopped = {}
        while len(stopped) < 2:
            for process in processes:
                if process.name not in stopped and matches(process, first["fingerprint"]) == []:
                    stopped[process.name] = time.monotonic() - withdrawn
            assert time.monotonic() - withdrawn < 30, f"still matching a withdrawn entry: {stopped}"
        print("\nwithdrawal appended -> no longer matched: " +
              ", ".join(f"process {name} {seconds:.2f} s" for name, seconds in sorted(stopped.items())) +
              " (the follower polls every 0.2 s)")

        # The process that follows dies; the other follows from now on, and matches.
        leader = until("the sequencing process", lambda: next(
            (p for p in processes if (p.health() or {}).get("sequencer")), None))
        leader.kill()
        survivor = next(p for p in processes if p is not leader)
        until("the survivor to take over", lambda: (survivor.health() or {}).get("sequencer"))
        second = submission(2)
        later = admin_append(helpline, second)["index"]
        until("the survivor to match what the helpline published next",
              lambda: matches(survivor, second["fingerprint"]) == [later])
    finally:
        for process in processes:
            process.kill()
        helpline.stop()
