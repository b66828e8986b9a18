"""The list log's checkpoint gets its witnesses' cosignatures even when a witness was
down at `federation publish` (node/federation/cosigning.py; spec/parts/joining.md §3.3),
with real nodes over HTTP: the coordinator's running node asks a witness that was down
again until it cosigns, and a follower that requires the witness then accepts the new
version; readers never see a torn or shrinking checkpoint; a witness that answers
garbage, another key's line, a cosignature of another checkpoint or a line under
another witness's name never gets a line into the served checkpoint, nor one of its own
into the node's log."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import Counter

import aiohttp
from aiohttp import web

from node.cli import main as cli_main
from node.federation.cosigning import has_cosigned
from node.federation.members import make_list, sign_list
from node.federation.publish import LOG_DIR
from node.witness.addcheckpoint import parse_request
from node.witness.keys import load_witness_signer
from protocol.checkpoint import Checkpoint
from protocol.cosignature import CosignatureSigner
from protocol.note import NoteSignature, Signer, parse_note
from publish_support import make_datadir
from test_federation import FEDERATION, Coordinator, _member, cli, status
from test_federation_log import log_state, update

COSIGNER = "node.federation.cosigning"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def until(condition, timeout: float = 15.0, what: str = "") -> float:
    """Poll `condition` until it holds; returns the seconds it took (fails after `timeout`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def served(datadir) -> bytes:
    return (datadir.root / LOG_DIR / "checkpoint").read_bytes()


def records(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == COSIGNER and r.levelno == level]


def coordinator_and_witness(tmp_path, capsys):
    """A coordinator's data directory c and a witness's w that witnesses the list log:
    (c, w, the Coordinator, its list key, the witness's verifier key)."""
    c = make_datadir(tmp_path, name="c", origin="c.example/log")
    w = make_datadir(tmp_path, name="w", origin="w.example/witness")
    config = w.config
    config.node.role = "witness"
    w.save_config(config)
    coordinator = Coordinator(tmp_path, capsys, c)
    key = Signer.from_key_file(coordinator.key.read_bytes())
    cli(capsys, "witness", "logs", "add", "--dir", w.root, FEDERATION, coordinator.vkey)
    return c, w, coordinator, key, load_witness_signer(w, create=True).verifier_key()


async def test_a_witness_down_at_publish_cosigns_when_back_and_the_follower_then_accepts(tmp_path, capsys, start_node,
                                                                                         caplog):
    caplog.set_level(logging.INFO, logger=COSIGNER)
    c, w, coordinator, key, wvkey = coordinator_and_witness(tmp_path, capsys)
    p = make_datadir(tmp_path, name="p", origin="p.example/log", role="platform")
    host = "127.0.0.133"
    port = free_port(host)
    rw = await start_node(w, host=host, port=port)
    running = await start_node(c, host="127.0.0.134")
    cli(capsys, "witness", "use", "--dir", c.root, wvkey, rw.public_url, "--name", "the-witness")
    members = [_member(tmp_path, f"h{i}")[0] for i in range(1, 3)]
    lists = {n: sign_list(make_list(FEDERATION, n, members[:n]), [key]) for n in (1, 2)}
    assert "cosigned by the witness the-witness" in await asyncio.to_thread(coordinator.publish_in_log, lists[1])
    await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", p.root,
                            running.public_url + "/federation/list", "--key", coordinator.vkey, "--witness", wvkey)
    assert log_state(p)["serial"] == 1

    # The witness is down when serial 2 is published: reported, and the follower refuses it.
    await rw.stop()
    out = await asyncio.to_thread(coordinator.publish_in_log, lists[2])
    assert "NOT cosigned by the witness the-witness" in out and "asks the witnesses again in the background" in out
    out = await update(capsys, p, expect=1)
    assert "not cosigned as required" in out and log_state(p)["serial"] == 1
    assert "NOT cosigned by the witness the-witness" in status(capsys, c)
    capsys.readouterr()
    cli_main(["status", "--dir", str(c.root), "--json"])
    published = json.loads(capsys.readouterr().out)["federation_published"]
    assert published == {"federation": FEDERATION, "log_size": 2, "problem": None,
                         "witnesses": [{"name": "the-witness", "vkey": wvkey, "cosigned": False}]}
    cosigner = running.node.list_cosigner
    await until(lambda: wvkey in cosigner.missing and cosigner.missing[wvkey].attempts >= 2 and cosigner.probes >= 2,
                what="the node asks the witness again, and looks whether it is back")
    uncosigned = served(c)
    assert not has_cosigned(parse_note(uncosigned), wvkey)

    # Readers poll the served checkpoint while the witness comes back.
    seen: list[bytes] = []
    done = asyncio.Event()

    async def reader():
        async with aiohttp.ClientSession() as session:
            while not done.is_set():
                async with session.get(running.public_url + "/federation/checkpoint") as response:
                    assert response.status == 200
                    seen.append(await response.read())
                await asyncio.sleep(0.01)

    reading = asyncio.create_task(reader())
    await until(lambda: seen, what="a reader's first answer")
    await start_node(w, host=host, port=port)
    took = await until(lambda: has_cosigned(parse_note(served(c)), wvkey), what="the cosignature served")
    await asyncio.sleep(0.1)
    done.set()
    await reading
    assert took < 10, took
    cosigned = served(c)
    assert cosigned.startswith(uncosigned) and len(parse_note(cosigned).signatures) == 2  # the body, one more line
    counts = [len(parse_note(note).signatures) for note in seen]  # every answer whole, none going back
    assert all(parse_note(note).text == parse_note(cosigned).text for note in seen)
    assert counts == sorted(counts) and counts[0] == 1 and counts[-1] == 2, counts

    out = await update(capsys, p)
    assert "accepted the list's serial 2" in out and log_state(p)["checkpoint"] == cosigned
    assert "cosigned by 1 of the 1 witness(es)" in status(capsys, c) and "NOT cosigned" not in status(capsys, c)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "the-witness has not cosigned the list's checkpoint 2" in warnings[0], warnings
    assert [m for m in records(caplog, logging.INFO) if "cosigned the list's checkpoint 2" in m] != []
    assert cosigner.missing == {}
    requests = cosigner.requests
    await asyncio.sleep(1.5)
    assert cosigner.requests == requests  # nothing more asked once every witness has cosigned


def _hostile_app(signers: dict[str, CosignatureSigner], asked: Counter) -> web.Application:
    """Witnesses that answer add-checkpoint for the federation's log wrongly, each its
    own way (by the path's first segment); a flaky one answers 503 first, then right."""
    async def add_checkpoint(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        note = parse_request(body).note
        text = parse_note(note).text
        if Checkpoint.parse(text).origin != FEDERATION:
            return web.Response(status=404, text="not a log of ours\n")  # the coordinator's own log
        asked[name] += 1
        signer, now = signers[name], int(time.time())
        if name == "garbage":
            reply = b"hello, I am a witness\n"
        elif name == "binary":
            reply = b"\xff\xfe\x00\n"
        elif name == "huge":
            reply = signer.cosign(text, now).encode() * 2000 + b"\n"
        elif name == "wrongkey":  # its name, another key
            reply = CosignatureSigner.generate(signer.name).cosign(text, now).encode() + b"\n"
        elif name == "othercheckpoint":  # its key, over another checkpoint
            cp = Checkpoint.parse(text)
            reply = signer.cosign(Checkpoint(cp.origin, cp.size + 1, cp.root_hash).to_text(), now).encode() + b"\n"
        elif name == "newline":  # a refusal that would write a line of its own into our log
            return web.Response(status=400, text="refused\nfederation list: the witness newline cosigned\n")
        elif name == "smuggler":  # its own line, and a forged one under the flaky witness's name and key ID
            forged = NoteSignature(signers["flaky"].name, signers["flaky"].key_id, bytes(72)).to_line()
            reply = (signer.cosign(text, now) + "\n" + forged + "\n").encode()
        elif asked[name] == 1:
            return web.Response(status=503, text="busy\n")
        else:
            reply = signer.cosign(text, now).encode() + b"\n"
        return web.Response(body=reply, content_type="text/plain")

    app = web.Application()
    app.router.add_post("/{name}/add-checkpoint", add_checkpoint)
    return app


async def test_a_witness_answering_wrongly_never_gets_a_line_into_the_served_checkpoint(tmp_path, capsys, start_node,
                                                                                         caplog):
    caplog.set_level(logging.INFO, logger=COSIGNER)
    c = make_datadir(tmp_path, name="c", origin="c.example/log")
    running = await start_node(c, host="127.0.0.135")
    coordinator = Coordinator(tmp_path, capsys, c)
    key = Signer.from_key_file(coordinator.key.read_bytes())
    names = ["garbage", "binary", "huge", "wrongkey", "othercheckpoint", "newline", "smuggler", "flaky"]
    signers = {name: CosignatureSigner.generate(f"{name}.example/witness") for name in names}
    asked: Counter = Counter()
    runner = web.AppRunner(_hostile_app(signers, asked))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.136", 0)
        await site.start()
        base = f"http://127.0.0.136:{runner.addresses[0][1]}"
        for name in names:
            cli(capsys, "witness", "use", "--dir", c.root, signers[name].verifier_key(), f"{base}/{name}",
                "--name", name)
        members = [_member(tmp_path, "h1")[0]]
        out = await asyncio.to_thread(coordinator.publish_in_log, sign_list(make_list(FEDERATION, 1, members), [key]))
        assert out.count("NOT cosigned by the witness") == len(names) - 1, out  # the smuggler's own line is good
        cosigner = running.node.list_cosigner
        flaky = signers["flaky"].verifier_key()
        await until(lambda: has_cosigned(parse_note(served(c)), flaky), what="the flaky witness's cosignature")
        await until(lambda: all(asked[name] >= 3 for name in names[:-2]), what="each witness asked again")
    finally:
        await runner.cleanup()

    note = parse_note(served(c))
    assert sorted(s.name for s in note.signatures) == sorted([FEDERATION, "flaky.example/witness",
                                                             "smuggler.example/witness"]), note.signatures
    assert has_cosigned(note, flaky) and has_cosigned(note, signers["smuggler"].verifier_key())
    for name in names[:-2]:
        assert not has_cosigned(note, signers[name].verifier_key()) and name in cosigner.missing.get(
            signers[name].verifier_key()).who
    out = status(capsys, c)
    assert "cosigned by 2 of the 8 witness(es)" in out, out
    for name in names[:-2]:
        assert f"NOT cosigned by the witness {name} " in out
    assert not any("\n" in message for message in records(caplog, logging.WARNING))
    warned = Counter(message.split()[4] for message in records(caplog, logging.WARNING))
    assert warned == Counter(names[:-2]), warned  # one each, however often asked; none for the flaky one
    assert any(m.startswith("federation list: the witness flaky cosigned") for m in records(caplog, logging.INFO))


async def test_a_node_that_starts_asks_the_witnesses_its_served_list_checkpoint_lacks(tmp_path, capsys, start_node):
    """Published while no node ran for the directory (`--no-witness`, or a witness down):
    the node asks at its start, not at the next publication."""
    c, w, coordinator, key, wvkey = coordinator_and_witness(tmp_path, capsys)
    rw = await start_node(w, host="127.0.0.137")
    cli(capsys, "witness", "use", "--dir", c.root, wvkey, rw.public_url)
    path = tmp_path / "list-1"
    path.write_bytes(sign_list(make_list(FEDERATION, 1, [_member(tmp_path, "h1")[0]]), [key]))
    out = cli(capsys, "federation", "publish", "--dir", c.root, "--key", coordinator.key, "--no-witness", path)
    assert "no node runs for this directory: `ncii-node serve` asks the witnesses again" in out
    assert "no node runs for this directory" in status(capsys, c)
    uncosigned = served(c)
    assert not has_cosigned(parse_note(uncosigned), wvkey)
    await start_node(c, host="127.0.0.138")
    took = await until(lambda: has_cosigned(parse_note(served(c)), wvkey), what="the cosignature served")
    assert took < 5, took
    assert served(c).startswith(uncosigned)
