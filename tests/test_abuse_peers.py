"""Issue 12, point 4: what a followed platform says never reaches a victim unchecked,
and feedback about nothing cannot fill a helpline's disk. Two real `ncii-node serve`
processes: a helpline and a platform that announces a misleading display name and
publishes thousands of verdicts about entries that do not exist."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys

import aiohttp
import pytest

from node.cases.eligibility import QUESTIONS
from node.cli import main as cli_main
from node.follow.apply import MAX_UNMATCHED_FEEDBACK
from publish_support import append, helpline_datadir, make_datadir
from serve_support import NodeProcess

pytestmark = pytest.mark.timeout(180)

HELPLINE = "helpline.example/log"
PLATFORM = "platform.example/log"
LURE = "URGENT: your case was CLOSED - call +1 555 0100 to reopen"
JUNK = MAX_UNMATCHED_FEEDBACK + 2000


def cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


async def wait_for(what, probe, timeout: float = 60.0):
    for _ in range(int(timeout / 0.2)):
        value = await probe() if asyncio.iscoroutinefunction(probe) else probe()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def followed(datadir, origin: str) -> dict:
    """The `status` report of one followed log (what `ncii-node status --json` prints)."""
    from node.follow.status import status_report
    from node.store import open_db

    db = open_db(datadir.db_path)
    try:
        return next(log for log in status_report(db)["logs"] if log["origin"] == origin)
    finally:
        db.close()


async def test_a_platforms_words_do_not_reach_the_victim(tmp_path):
    helpline = helpline_datadir(tmp_path)
    platform = make_datadir(tmp_path, public_read=False, name="platform", origin=PLATFORM, interval=0.05)
    config = platform.config
    config.node.role = "platform"
    platform.save_config(config)
    for reader, log in ((platform, helpline), (helpline, platform)):
        assert cli_main(["readers", "add", "--dir", str(log.root), reader.load_request_signer().verifier_key()]) == 0
    h, p = NodeProcess(helpline), NodeProcess(platform)
    await h.start()
    await p.start()
    try:
        async with aiohttp.ClientSession() as session:
            body = {"eligibility": dict.fromkeys(QUESTIONS, True),
                    "fingerprints": [{"signal": "md5", "fingerprint": secrets.token_hex(16)}], "lang": "en"}
            async with session.post(h.public_url + "/v1/cases", json=body) as r:
                case = await r.json()
            index = case["published"][0]["index"]
            codes = {"case_number": case["case_number"], "pin": case["pin"]}
            cli("follow", "add", "--dir", str(platform.root), h.public_url, "--vkey",
                helpline.load_log_signer().verifier_key(), "--interval", "0.2")
            cli("follow", "add", "--dir", str(helpline.root), p.public_url, "--vkey",
                platform.load_log_signer().verifier_key(), "--interval", "0.2", "--name", "Example Platform")
            await wait_for("the platform to hold the case", lambda: followed(platform, HELPLINE)["size"] > index)

            # The platform lies about its name, gives one real verdict, then floods.
            token = platform.admin_token()
            lure = {"kind": "announcement", "display_name": LURE, "contact_url": "https://lure.example/",
                    "policy_url": "https://lure.example/"}
            assert (await append(session, p.admin_url, token, [json.dumps(lure)]))[0] == 200
            cli("feedback", "--dir", str(platform.root), "--origin", HELPLINE, "--index", str(index),
                "--verdict", "removed")
            junk = [json.dumps({"kind": "feedback", "origin": HELPLINE, "index": 10**9 + i,
                                "leaf_hash": secrets.token_hex(32), "verdict": "removed"}) for i in range(JUNK)]
            status, acks = await append(session, p.admin_url, token, junk)
            assert status == 200
            last = acks[-1]["index"]
            await wait_for("the helpline to verify all of it", lambda: followed(helpline, PLATFORM)["size"] > last)

            async with session.post(h.public_url + "/v1/cases/status", json=codes) as r:
                answer = await r.json()
            [item] = answer["feedback"]
            assert item == {"platform": PLATFORM, "name": "Example Platform", "index": index, "verdict": "removed",
                            "day": item["day"]}
            assert "URGENT" not in json.dumps(answer)

            # Feedback about nothing: a bounded share stored, the rest counted.
            log = followed(helpline, PLATFORM)
            assert log["feedback_dropped"] == JUNK - MAX_UNMATCHED_FEEDBACK
            assert log["display_name"] == LURE  # known to the operator ...
            text = cli("status", "--dir", str(helpline.root))
            assert "not shown to people unless approved" in text and "counted, not stored" in text
            from node.store import open_db, peer_feedback

            with open_db(helpline.db_path) as db:
                assert peer_feedback.unmatched_stored(db, PLATFORM) == MAX_UNMATCHED_FEEDBACK

            # ... and shown to people only once the operator approves it.
            cli("follow", "name", "--dir", str(helpline.root), PLATFORM, "--from-announcement")
            async with session.post(h.public_url + "/v1/cases/status", json=codes) as r:
                assert (await r.json())["feedback"][0]["name"] == LURE
            cli("follow", "name", "--dir", str(helpline.root), PLATFORM, "--set", "Example Platform")
    finally:
        p.stop()
        h.stop()


async def test_a_shrinking_log_that_withholds_its_tiles_is_caught_with_evidence(tmp_path):
    """Issue 12, point 7, with a real `ncii-node serve` following a hostile log on a real
    socket: the log shows a smaller checkpoint of another history and refuses every tile;
    the node stops it and writes an evidence file that `ncii-node audit verify-evidence`
    accepts, made from the leaf hashes it had verified."""
    from follow_support import LogServer, StaticLog, pdq_entry
    from protocol.merkle import root_of

    log = StaticLog()
    log.append(*[pdq_entry(i) for i in range(300)])
    server = await LogServer(log).start()
    platform = make_datadir(tmp_path, public_read=False, name="platform", origin=PLATFORM, interval=0.05)
    node = NodeProcess(platform)
    await node.start()
    try:
        cli("follow", "add", "--dir", str(platform.root), server.url, "--vkey", log.vkey, "--interval", "0.2")
        await wait_for("the node to verify the log", lambda: followed(platform, log.origin)["size"] == 300)
        server.overrides["tile/*"] = b"withheld"
        server.checkpoint = log.sign(200, root_of(log.leaves[1:201]))
        state = await wait_for("the fork", lambda: (s := followed(platform, log.origin))["forked"] and s)
        assert state["size"] == 300 and state["fork_evidence"] and state["fork_evidence_problem"] is None
        checked = subprocess.run([sys.executable, "-m", "node", "audit", "verify-evidence", state["fork_evidence"]],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0 and checked.stdout.startswith("VALID evidence"), checked
    finally:
        node.stop()
        await server.stop()
