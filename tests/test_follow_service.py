"""The follower as operators run it: `ncii-node follow` and `status`, the apscheduler
service inside `serve`, GET /status, back-off of a failing log while others sync."""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp

from follow_support import LogServer, StaticLog, helpline_and_platform, pdq_entry
from node.cli import main as cli_main
from node.follow.listener import FollowListener
from node.follow.scheduler import FollowService, backoff_delay
from node.store import open_db
from publish_support import append, make_datadir, wait_for


def pdq_line(i: int) -> str:
    return json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": f"{i:064x}"})




def test_follow_cli_add_list_remove(tmp_path, capsys):
    datadir = make_datadir(tmp_path, name="platform", origin="platform.example/log")
    d = str(datadir.root)
    vkey = StaticLog("helpline.example/log").vkey
    assert cli_main(["follow", "add", "--dir", d, "https://helpline.example/log", "--vkey", vkey,
                     "--name", "helpline"]) == 0
    assert "pinned verifier key" in capsys.readouterr().out
    assert cli_main(["follow", "add", "--dir", d, "https://helpline.example/log", "--vkey", vkey]) == 1
    assert "already followed" in capsys.readouterr().err
    assert cli_main(["follow", "add", "--dir", d, "https://x.example/log"]) == 2  # no key, no --tofu
    assert "--vkey" in capsys.readouterr().err
    assert cli_main(["follow", "add", "--dir", d, "ftp://x.example/log", "--vkey", vkey]) == 2
    assert cli_main(["follow", "add", "--dir", d, "https://x.example/log", "--vkey", "nonsense"]) == 2
    capsys.readouterr()
    assert cli_main(["follow", "list", "--dir", d, "--json"]) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["origin"] == "helpline.example/log" and listed["vkey"] == vkey and listed["name"] == "helpline"
    assert listed["size"] == 0 and listed["forked"] is False and listed["tofu"] is False
    assert cli_main(["status", "--dir", d, "--json"]) == 5  # no `serve` runs for d
    report = json.loads(capsys.readouterr().out)
    assert report["logs"][0]["origin"] == "helpline.example/log" and report["logs"][0]["size"] == 0
    assert report["fingerprints"] == {"active": 0, "withdrawn": 0, "suppressed": 0}
    assert cli_main(["follow", "remove", "--dir", d, "helpline"]) == 0
    assert cli_main(["follow", "remove", "--dir", d, "helpline"]) == 1
    capsys.readouterr()
    assert cli_main(["follow", "list", "--dir", d]) == 0
    assert "following no logs" in capsys.readouterr().out


async def test_tofu_pins_the_presented_key_with_a_loud_warning(tmp_path, capsys, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log")
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/log")
    node = await start_node(helpline)
    try:
        code = await asyncio.to_thread(cli_main, ["follow", "add", "--dir", str(platform.root), node.public_url,
                                                  "--tofu"])
    finally:
        await node.stop()
    assert code == 0
    err = capsys.readouterr().err
    assert "WARNING: TRUST ON FIRST USE" in err and helpline.load_log_signer().verifier_key() in err
    db = open_db(platform.db_path)
    [entry] = db.follow.list_logs()
    db.close()
    assert entry.vkey == helpline.load_log_signer().verifier_key() and entry.tofu


async def test_serve_follows_a_restricted_log_and_reports_status(tmp_path, capsys, start_node):
    async with helpline_and_platform(tmp_path, start_node) as (helpline, platform, publisher, follower):
        async with aiohttp.ClientSession() as session:
            status, _ = await append(session, publisher.admin_url, helpline.admin_token(),
                                     [pdq_line(i) for i in range(300)])
            assert status == 200

            async def size():
                async with session.get(follower.public_url + "/status") as r:
                    assert r.status == 200
                    return (await r.json())["logs"][0]["size"]

            deadline = time.monotonic() + 10
            while await size() != 300 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            async with session.get(follower.public_url + "/status") as r:
                report = await r.json()
        [entry] = report["logs"]
        assert entry["origin"] == "helpline.example/log" and entry["size"] == 300 and entry["forked"] is False
        assert entry["last_verified_at"] and entry["lag_entries"] == 0
        assert report["fingerprints"]["active"] == 300
    capsys.readouterr()
    assert await asyncio.to_thread(cli_main, ["status", "--dir", str(platform.root)]) == 5  # stopped: not serving
    out = capsys.readouterr().out
    assert "helpline.example/log  [ok]" in out and "300 active" in out


async def test_a_failing_log_backs_off_while_another_keeps_syncing(tmp_path):
    broken, honest = StaticLog("broken.example/log"), StaticLog("honest.example/log")
    servers = [await LogServer(broken).start(), await LogServer(honest).start()]

    async def fail(request):
        from aiohttp import web
        return web.Response(status=500, text="down")

    servers[0].overrides["checkpoint"] = fail
    db_path = tmp_path / "node.db"
    db = open_db(db_path)
    db.follow.add_log(broken.origin, servers[0].url, broken.vkey, interval=0.05)
    db.follow.add_log(honest.origin, servers[1].url, honest.vkey, interval=0.05)
    removed = []

    class Listener(FollowListener):
        def on_removed(self, origin):
            removed.append(origin)

    service = FollowService(db_path, timeout=0.5, max_backoff=0.4, reload_interval=0.2, listener=Listener())
    await service.start()
    try:
        for i in range(3):
            honest.append(*[pdq_entry(100 * i + k) for k in range(100)])
            assert await wait_for(lambda: db.follow.get_log(honest.origin).size == len(honest.entries))
        state = db.follow.get_log(broken.origin)
        assert state.failures >= 2 and "HTTP 500" in state.last_error and state.size == 0
        # Back-off: with a 0.4 s cap, the broken log was asked far less often than every 50 ms.
        asked = servers[0].requests.count("checkpoint")
        assert 2 <= asked < 30
        # Recovery: once the peer answers, the log catches up.
        servers[0].overrides.clear()
        broken.append(pdq_entry(1))
        assert await wait_for(lambda: db.follow.get_log(broken.origin).size == 1)
        # `follow remove` while running: the job goes away and the listener hears of it.
        db.follow.remove_log(honest.origin)
        assert await wait_for(lambda: honest.origin not in service.jobs)
        assert await wait_for(lambda: removed == [honest.origin])
    finally:
        await service.stop()
        db.close()
        for server in servers:
            await server.stop()


async def test_no_round_before_the_node_serves(tmp_path):
    """A node's followers begin once it serves (node/runtime.py's `serving`): a node back
    from an outage listens and publishes first, and catches up after (issue 22)."""
    log = StaticLog("helpline.example/log")
    log.append(pdq_entry(1))
    server = await LogServer(log).start()
    db_path = tmp_path / "node.db"
    db = open_db(db_path)
    db.follow.add_log(log.origin, server.url, log.vkey, interval=0.05)
    serving = asyncio.Event()
    service = FollowService(db_path, timeout=0.5, reload_interval=0.2, start_after=serving)
    await service.start()
    try:
        await asyncio.sleep(0.5)
        assert server.requests == [] and db.follow.get_log(log.origin).size == 0
        serving.set()
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 1, timeout=10)
    finally:
        await service.stop()
        db.close()
        await server.stop()


def test_backoff_grows_and_is_capped_with_jitter():
    rng = random.Random(1)
    assert backoff_delay(1.0, 0, 60, rng) == 0
    delays = [backoff_delay(1.0, n, 60, rng) for n in range(1, 12)]
    assert 0.5 <= delays[0] < 1.5 and 4 <= delays[3] < 12
    assert all(30 <= d < 90 for d in delays[7:])
    assert len({round(backoff_delay(1.0, 5, 60, rng), 6) for _ in range(20)}) > 10  # jittered


def test_status_says_fork_loudly(tmp_path, capsys):
    datadir = make_datadir(tmp_path, name="platform", origin="platform.example/log")
    log = StaticLog("helpline.example/log")
    db = open_db(datadir.db_path)
    db.follow.add_log(log.origin, "https://helpline.example/log", log.vkey)
    db.follow.record_fork(log.origin, "two checkpoints of size 5 with different roots", 5, b"a", 5, b"b")
    db.close()
    capsys.readouterr()
    assert cli_main(["status", "--dir", str(datadir.root)]) == 3
    out = capsys.readouterr().out
    assert out.startswith("!!! FORK: log helpline.example/log") and "[FORKED]" in out
    assert cli_main(["status", "--dir", str(datadir.root), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["forked_logs"] == [log.origin] and report["logs"][0]["forked"] is True
    assert report["logs"][0]["last_error"].startswith("FORK:")
