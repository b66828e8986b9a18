"""Offline proofs and quorum policies end to end, with real nodes on 127.0.0.1 and the
real `ncii-node` command in subprocesses:

- `ncii-node proof --dir` (own log, the most-cosigned checkpoint) and `--url` (any
  readable log) write C2SP tlog-proofs that `ncii-node audit verify-proof` accepts
  offline against a tlog-policy or k-of-n flags, and refuses once altered or when the
  quorum is not met;
- a follower given a policy file (`witness require --policy`) applies a checkpoint
  only once the policy's quorum cosigned it, also for a log whose key is not named
  like its origin (`follow add --origin`, C2SP allows it);
- `ncii-node audit --policy` reports violation `witnesses` when the quorum is not met.
"""

from __future__ import annotations

import json

import aiohttp

from node.cli import main as cli_main
from node.store import follow as follow_store
from node.store import open_db
from node.store import witness as store
from node.web.app import RunningNode
from node.witness.addcheckpoint import encode_request
from node.witness.keys import load_witness_signer
from protocol.cosignature import CosignatureSigner
from protocol.note import Signer, parse_note
from protocol.tlogproof import parse_proofs

from publish_support import append, make_datadir, pdq_line, wait_for
from test_audit import LogServer, build_log, cli, submission
from test_witness_publish import start_witness


def policy_file(path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


async def test_proofs_of_a_witnessed_log_verify_offline(tmp_path):
    pub_dir = make_datadir(tmp_path, name="publisher")
    config = pub_dir.config
    config.witness.add_checkpoint_interval = 0.2
    pub_dir.save_config(config)
    log_vkey = pub_dir.load_log_signer().verifier_key()
    w1 = await start_witness(tmp_path, "w1", log_vkey)
    w2 = await start_witness(tmp_path, "w2", log_vkey)
    db = open_db(pub_dir.db_path)
    for w in (w1, w2):
        store.add_log_witness(db, w.cosigner_vkey, w.public_url)
    db.close()
    publisher = await RunningNode(pub_dir).start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            status, acks = await append(session, publisher.admin_url, pub_dir.admin_token(),
                                        [pdq_line(i) for i in range(6)])
            assert status == 200
        size = acks[-1]["checkpoint_size"]
        pdb = publisher.context.db
        await wait_for(lambda: all(w.last_size == size for w in store.list_log_witnesses(pdb)))

        # Our own log, read from the data directory: one entry, a C2SP tlog-proof.
        one = tmp_path / "entry2.tlog-proof"
        code, _, err = await cli("proof", "--dir", str(pub_dir.root), "2", "-o", str(one))
        assert code == 0, err
        assert "cosigned by w1.example/witness, w2.example/witness" in err
        proof = parse_proofs(one.read_bytes())
        assert one.read_bytes().startswith(b"c2sp.org/tlog-proof@v1\n")
        assert len(parse_note(proof.checkpoint).signatures) == 3       # the log and both witnesses

        policy = policy_file(tmp_path / "policy", f"log {log_vkey}", f"witness a {w1.cosigner_vkey}",
                             f"witness b {w2.cosigner_vkey}", "group both all a b", "quorum both")
        code, out, err = await cli("audit", "verify-proof", str(one), "--policy", policy)
        assert code == 0, out + err
        assert out.startswith("VALID proof: 1 entry in log test.example/log") and "entry 2: submission: pdq" in out
        assert "What it does not prove" in out
        # The same with flags, and as JSON.
        code, out, _ = await cli("audit", "verify-proof", str(one), "--vkey", log_vkey, "--witness",
                                 w1.cosigner_vkey, "--witness", w2.cosigner_vkey, "-k", "2", "--json")
        assert code == 0 and json.loads(out)["entries"][0]["index"] == 2

        # Several entries of the log, fetched over HTTP: our bundle, one checkpoint.
        bundle = tmp_path / "entries.tlog-proofs"
        code, _, err = await cli("proof", "--url", publisher.public_url, "--vkey", log_vkey, "0", "3", "5",
                                 "-o", str(bundle))
        assert code == 0, err
        code, out, _ = await cli("audit", "verify-proof", str(bundle), "--policy", policy, "--json")
        assert code == 0 and [e["index"] for e in json.loads(out)["entries"]] == [0, 3, 5]

        # What must fail: an altered entry; a quorum the proof does not meet; no policy.
        altered = tmp_path / "altered"
        text = one.read_bytes()
        extra = text.split(b"\n")[1]
        altered.write_bytes(text.replace(extra, extra[:-6] + (b"A" if extra[-6:-5] != b"A" else b"B") + extra[-5:]))
        code, out, _ = await cli("audit", "verify-proof", str(altered), "--policy", policy)
        assert code == 1 and out.startswith("NOT a valid proof (inclusion)"), out
        stranger = CosignatureSigner.generate("stranger.example/w").verifier_key()
        code, out, _ = await cli("audit", "verify-proof", str(one), "--vkey", log_vkey, "--witness",
                                 w1.cosigner_vkey, "--witness", stranger, "-k", "2")
        assert code == 1 and "(quorum)" in out
        code, _, err = await cli("audit", "verify-proof", str(one))
        assert code == 2 and "--policy" in err
        code, _, err = await cli("proof", "--dir", str(pub_dir.root), str(size))
        assert code == 1 and "not in the log" in err
    finally:
        await publisher.stop()
        await w1.stop()
        await w2.stop()


async def test_follower_policy_file_and_a_key_not_named_like_its_origin(aiohttp_server, tmp_path):
    origin, key = "crafted.example/log2", Signer.generate("crafted.example/key")
    server = await LogServer().start(aiohttp_server)
    files = build_log(key, [submission(i) for i in range(30)], origin=origin)
    server.histories["a"] = dict(files)

    wdir = make_datadir(tmp_path, name="witness", origin="witness.example/w")
    config = wdir.config
    config.node.role = "witness"
    wdir.save_config(config)
    assert cli_main(["witness", "logs", "add", "--dir", str(wdir.root), origin, key.verifier_key()]) == 0
    witness = await RunningNode(wdir).start("127.0.0.1", 0)
    cosigner = load_witness_signer(wdir).verifier_key()
    other = CosignatureSigner.generate("other.example/w").verifier_key()

    fdir = make_datadir(tmp_path, name="f", origin="f.example/node")
    assert cli_main(["follow", "add", "--dir", str(fdir.root), f"{server.url}/a", "--vkey", key.verifier_key(),
                     "--origin", origin]) == 0
    # A policy naming a log key for another origin is refused; this one has no log line
    # (the follower pinned the key) and wants our witness, or both of two others.
    bad = policy_file(tmp_path / "bad", f"log {key.verifier_key()}", f"witness w {cosigner}", "quorum w")
    assert cli_main(["witness", "require", "--dir", str(fdir.root), origin, "--policy", bad]) == 1
    good = policy_file(tmp_path / "good", f"witness w {cosigner}", f"witness x {other}",
                       f"witness y {CosignatureSigner.generate('y.example/w').verifier_key()}",
                       "group others all x y", "group any-route any w others", "quorum any-route")
    assert cli_main(["witness", "require", "--dir", str(fdir.root), origin, "--policy", good]) == 0
    follower = await RunningNode(fdir).start("127.0.0.1", 0)
    try:
        def state():
            return follow_store.get_log(follower.context.db, origin)

        await wait_for(lambda: "quorum NOT met" in (state().last_error or ""))
        assert state().size == 0
        async with aiohttp.ClientSession() as session:
            async with session.post(witness.public_url + "/add-checkpoint",
                                    data=encode_request(0, [], files["checkpoint"])) as r:
                assert r.status == 200
                line = await r.read()
        server.histories["a"]["checkpoint"] = files["checkpoint"] + line
        await wait_for(lambda: state().size == 30)
        assert not state().forked
    finally:
        await follower.stop()
        await witness.stop()


async def test_audit_checks_the_policy_quorum(aiohttp_server, tmp_path):
    signer = Signer.generate("crafted.example/log")
    w = CosignatureSigner.generate("w.example/w")
    server = await LogServer().start(aiohttp_server)
    files = build_log(signer, [submission(i) for i in range(12)])
    cp_text = parse_note(files["checkpoint"]).text
    server.histories["cosigned"] = dict(files, checkpoint=files["checkpoint"] + (w.cosign(cp_text, 1700000000)
                                                                                 + "\n").encode())
    server.histories["plain"] = files
    policy = policy_file(tmp_path / "p", f"log {signer.verifier_key()}", f"witness w {w.verifier_key()}",
                         "quorum w")
    code, out, err = await cli("audit", f"{server.url}/cosigned", "--vkey", signer.verifier_key(), "--json",
                               "--html", str(tmp_path / "a.html"), "--policy", policy)
    assert code == 0, err
    report = json.loads(out)
    assert report["witnesses"]["met"] and list(report["witnesses"]["cosigned"]) == ["w (w.example/w)"]
    code, out, _ = await cli("audit", f"{server.url}/plain", "--vkey", signer.verifier_key(),
                             "--html", str(tmp_path / "b.html"), "--witness", w.verifier_key(), "-k", "1")
    assert code == 1
    assert "VIOLATION [witnesses]" in out and "witnesses: policy needs witness w.example/w: NOT met" in out
