"""The witness over real HTTP: a real node (role witness) on 127.0.0.1, real SQLite,
checkpoints built and signed with protocol/ code. Every status code of C2SP
tlog-witness add-checkpoint, the atomic check-and-store, the monitor endpoints and
the split-view evidence a conflicting checkpoint leaves behind."""

from __future__ import annotations

import asyncio
import base64

import pytest

from node.witness.addcheckpoint import encode_request, parse_request, BadRequest
from protocol.evidence import verify_evidence
from node.witness.keys import load_witness_signer
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.cosignature import CosignatureVerifier
from protocol.merkle import consistency_proof, leaf_hash, root_of
from protocol.note import Signer, open_note

from publish_support import make_datadir

LOG = "log.example/helpline"


class FakeLog:
    """A log's history built with protocol/: leaves, signed checkpoints, proofs."""

    def __init__(self, signer: Signer, prefix: bytes = b"entry"):
        self.signer = signer
        self.prefix = prefix
        self.leaves: list[bytes] = []

    def grow(self, n: int) -> "FakeLog":
        start = len(self.leaves)
        self.leaves += [leaf_hash(self.prefix + b"%d" % i) for i in range(start, start + n)]
        return self

    def checkpoint(self, size: int | None = None) -> tuple[Checkpoint, bytes]:
        size = len(self.leaves) if size is None else size
        cp = Checkpoint(self.signer.name, size, root_of(self.leaves[:size]))
        return cp, sign_checkpoint(cp, self.signer)

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self.leaves) if new is None else new
        if old == 0 or old == new:
            return []
        return consistency_proof(old, new, self.leaves[:new])

    def request(self, old: int, size: int | None = None) -> bytes:
        size = len(self.leaves) if size is None else size
        return encode_request(old, self.proof(old, size), self.checkpoint(size)[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def witness_database(request):
    """None (SQLite), or a PostgreSQL database: a fixture of its own, set up before
    start_node, so the node stops before its database is dropped."""
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


@pytest.fixture
async def witness_node(tmp_path, witness_database, start_node):
    """A witness node on SQLite, then on PostgreSQL."""
    database = witness_database
    datadir = make_datadir(tmp_path, name="witness", origin="witness.example/w1", database=database)
    config = datadir.config
    config.node.role = "witness"
    datadir.save_config(config)
    log_signer = Signer.generate(LOG)
    from node.store import open_db

    db = open_db(datadir.db_path)
    db.witness.add_known_log(LOG, log_signer.verifier_key(), "test log")
    db.close()
    node = await start_node(datadir)
    node.log_signer = log_signer
    node.witness_vkey = load_witness_signer(datadir).verifier_key()
    return node


async def post(session, node, body: bytes):
    async with session.post(node.public_url + "/add-checkpoint", data=body) as r:
        return r.status, await r.read(), r.headers.get("Content-Type", "")


def assert_cosigned(node, reply: bytes, note: bytes) -> int:
    verifier = CosignatureVerifier.from_vkey(node.witness_vkey)
    lines = reply.decode().splitlines()
    assert lines and all(line.startswith("\u2014 ") for line in lines)
    checkpoint_text = note.decode().split("\n\n")[0] + "\n"
    return verifier.verify_line(checkpoint_text, lines[0])


async def test_first_checkpoint_is_cosigned_and_stored(witness_node, session):
    log = FakeLog(witness_node.log_signer).grow(10)
    status, reply, ctype = await post(session, witness_node, log.request(0))
    assert status == 200, reply
    assert_cosigned(witness_node, reply, log.checkpoint()[1])
    # Monitors read the cosigned checkpoint back; it verifies under both keys.
    async with session.get(witness_node.public_url + "/witness/checkpoints") as r:
        doc = await r.json()
    assert doc["witness"] == witness_node.witness_vkey
    [entry] = doc["checkpoints"]
    assert entry["origin"] == LOG and entry["size"] == 10
    note = open_note(entry["note"].encode(), [witness_node.log_signer.verifier(),
                                              CosignatureVerifier.from_vkey(witness_node.witness_vkey)])
    assert len(note.verified_by) == 2
    async with session.get(witness_node.public_url + "/witness/checkpoint", params={"origin": LOG}) as r:
        assert r.status == 200 and (await r.read()) == entry["note"].encode()


async def test_growth_with_valid_proof_is_cosigned(witness_node, session):
    log = FakeLog(witness_node.log_signer).grow(7)
    assert (await post(session, witness_node, log.request(0)))[0] == 200
    for grow in (1, 100, 300):
        old = len(log.leaves)
        log.grow(grow)
        status, reply, _ = await post(session, witness_node, log.request(old))
        assert status == 200, reply
    # The same checkpoint again (old size = its size, same root) is cosigned again.
    size = len(log.leaves)
    status, _, _ = await post(session, witness_node, log.request(size))
    assert status == 200


async def test_409_wrong_old_size_reports_stored_size(witness_node, session):
    log = FakeLog(witness_node.log_signer).grow(20)
    assert (await post(session, witness_node, log.request(0, 12)))[0] == 200
    for old in (0, 5, 13):
        status, body, ctype = await post(session, witness_node, log.request(old, 20))
        assert status == 409
        assert ctype.split(";")[0] == "text/x.tlog.size"
        assert body == b"12\n"
    # Rolling back is refused too: stored 12, a request for 8 with old 12 is a 400
    # (old > size), with old 0 a 409.
    assert (await post(session, witness_node, log.request(0, 8)))[0] == 409
    status, _, _ = await post(session, witness_node, encode_request(12, [], log.checkpoint(8)[1]))
    assert status == 400


async def test_422_same_size_other_root_leaves_evidence(witness_node, session):
    honest = FakeLog(witness_node.log_signer).grow(30)
    assert (await post(session, witness_node, honest.request(0)))[0] == 200
    fork = FakeLog(witness_node.log_signer, prefix=b"other").grow(30)
    status, body, _ = await post(session, witness_node, encode_request(30, [], fork.checkpoint()[1]))
    assert status == 422
    assert b"cosigned root" in body
    rows = witness_node.node.db.witness.list_evidence()
    assert len(rows) == 1
    verified = verify_evidence(rows[0][2])
    assert verified.kind == "same-size" and verified.smaller.size == 30
    # The stored view did not move.
    assert witness_node.node.db.witness.witness_latest(LOG).root_hash == honest.checkpoint()[0].root_hash


async def test_422_bad_consistency_proof(witness_node, session):
    honest = FakeLog(witness_node.log_signer).grow(16)
    assert (await post(session, witness_node, honest.request(0, 10)))[0] == 200
    # A proof of the right length with one hash changed.
    proof = honest.proof(10, 16)
    proof[0] = bytes(32)
    status, body, _ = await post(session, witness_node, encode_request(10, proof, honest.checkpoint()[1]))
    assert status == 422, body
    # A forked history of a larger size: its own valid proof does not fit the stored root.
    fork = FakeLog(witness_node.log_signer, prefix=b"fork").grow(16)
    status, _, _ = await post(session, witness_node, encode_request(10, fork.proof(10), fork.checkpoint()[1]))
    assert status == 422
    assert witness_node.node.db.witness.witness_latest(LOG).size == 10
    # Equal sizes: RFC 6962's proof is empty; a non-empty one is no proof at all.
    status, body, _ = await post(session, witness_node, encode_request(10, [bytes(32)], honest.checkpoint(10)[1]))
    assert status == 422 and b"empty" in body, body
    refusals = witness_node.node.db.witness.list_refusals()
    assert [r["status"] for r in refusals] == [422, 422, 422]


async def test_404_unknown_origin(witness_node, session):
    other = FakeLog(Signer.generate("unknown.example/log")).grow(3)
    status, _, _ = await post(session, witness_node, other.request(0))
    assert status == 404


async def test_403_no_valid_signature_from_known_key(witness_node, session):
    impostor = FakeLog(Signer.generate(LOG)).grow(3)  # right origin, unknown key
    status, _, _ = await post(session, witness_node, impostor.request(0))
    assert status == 403
    # A signature by the known key over altered text.
    log = FakeLog(witness_node.log_signer).grow(3)
    note = log.checkpoint()[1].replace(b"\n3\n", b"\n4\n", 1)
    status, _, _ = await post(session, witness_node, encode_request(0, [], note))
    assert status == 403


@pytest.mark.parametrize("body", [
    b"",
    b"old 0\n",                                   # no empty line
    b"old 01\n\n",                                # leading zero
    b"old -1\n\n",
    b"new 0\n\n",
    b"old 0\nAAAA\n\n",                           # proof line not a hash
    b"old 3\n" + (base64.b64encode(bytes(32)) + b"\n") * 64 + b"\n",  # 64 proof lines
    b"old 0\n\nnot a note",
    b"old 0\n\n" + "log.example/helpline\n3\n".encode() + "\n\u2014 x AAAA\n".encode(),
])
async def test_400_malformed(witness_node, session, body):
    log = FakeLog(witness_node.log_signer).grow(3)
    if body.startswith(b"old 3\n"):
        body += log.checkpoint()[1]
    status, _, _ = await post(session, witness_node, body)
    assert status == 400


async def test_400_old_size_larger_than_checkpoint(witness_node, session):
    log = FakeLog(witness_node.log_signer).grow(5)
    status, _, _ = await post(session, witness_node, encode_request(6, [bytes(32)], log.checkpoint()[1]))
    assert status == 400


async def test_concurrent_requests_never_roll_back(witness_node, session):
    """Many racing requests from the same old size: exactly one wins, the others get
    409, and the stored size is the winner's."""
    log = FakeLog(witness_node.log_signer).grow(200)
    assert (await post(session, witness_node, log.request(0, 10)))[0] == 200
    sizes = list(range(11, 200, 7))
    results = await asyncio.gather(*(post(session, witness_node, log.request(10, s)) for s in sizes))
    winners = [s for s, (status, _, _) in zip(sizes, results) if status == 200]
    assert len(winners) == 1
    assert all(status == 409 and body == f"{winners[0]}\n".encode()
               for (status, body, _), s in zip(results, sizes) if s not in winners)
    assert witness_node.node.db.witness.witness_latest(LOG).size == winners[0]


async def test_seen_endpoint_lists_cosigned_checkpoints(witness_node, session):
    log = FakeLog(witness_node.log_signer).grow(4)
    assert (await post(session, witness_node, log.request(0)))[0] == 200
    async with session.get(witness_node.public_url + "/witness/seen") as r:
        doc = await r.json()
    assert doc["node"] == "witness.example/w1"
    assert [(c["origin"], c["size"]) for c in doc["checkpoints"]] == [(LOG, 4)]


async def test_empty_tree_checkpoint(witness_node, session):
    log = FakeLog(witness_node.log_signer)
    status, reply, _ = await post(session, witness_node, log.request(0, 0))
    assert status == 200
    bad = Checkpoint(LOG, 0, bytes(32))
    status, _, _ = await post(session, witness_node, encode_request(0, [], sign_checkpoint(bad, witness_node.log_signer)))
    assert status == 422


def test_parse_request_round_trip():
    proof = [bytes([i]) * 32 for i in range(3)]
    req = parse_request(encode_request(5, proof, "note\n\n\u2014 sig\n".encode()))
    assert req.old_size == 5 and req.proof == proof
    with pytest.raises(BadRequest):
        parse_request(b"old 99999999999999999999\n\n")
