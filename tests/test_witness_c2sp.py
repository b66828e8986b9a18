"""C2SP tlog-witness, to the letter: raw HTTP/1.1 bytes over a socket to a real witness
node, and every signature made and checked here from the C2SP texts (signed-note,
tlog-checkpoint, tlog-cosignature) with bare Ed25519 and SHA-256 -- none of the
node's note code. Each test is one rule an independent verifier found broken:

  1. same size, other root        -> 422 (not 409 with a text body)
  2. size-0 checkpoint, wrong root -> 422
  3. old 0 with a proof line       -> 422 (not 400)
  4. a valid checkpoint with 16 signature lines -> 200, and what is kept and served
     holds only the lines the witness verified (the log's and its own)
  5. GET /<lowercase hex SHA-256 of the origin>/checkpoint serves the cosigned note
  6. a log key not named like its origin, and an origin with spaces, are witnessed
     (C2SP: the name SHOULD match); our own logs stay strict (tests of sign_checkpoint)

and the 409 rule (body = the stored size and a newline, Content-Type text/x.tlog.size),
which must stay exactly as it is.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from node.cli import main as cli_main
from node.web.app import RunningNode
from protocol.merkle import consistency_proof

from publish_support import make_datadir

EMPTY = hashlib.sha256(b"").digest()


# -- C2SP signed-note / tlog-checkpoint / tlog-cosignature, written from the texts ------

def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


class RawKey:
    """An Ed25519 note key: vkey string and signature lines, nothing else."""

    def __init__(self, name: str, seed: int):
        self.name = name
        self.private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        self.public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def vkey(self) -> str:
        return f"{self.name}+{key_id(self.name, 1, self.public).hex()}+" \
               f"{base64.b64encode(bytes([1]) + self.public).decode()}"

    def line(self, text: bytes) -> bytes:
        sig = key_id(self.name, 1, self.public) + self.private.sign(text)
        return "\u2014 ".encode() + self.name.encode() + b" " + base64.b64encode(sig) + b"\n"


def leaf(i: int, tag: bytes = b"") -> bytes:
    return hashlib.sha256(b"\x00" + tag + b"entry %d" % i).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of leaf hashes."""
    if not leaves:
        return EMPTY
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def checkpoint_text(origin: str, size: int, root: bytes) -> bytes:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()


def note(text: bytes, *keys: RawKey) -> bytes:
    return text + b"\n" + b"".join(k.line(text) for k in keys)


def body(old: int, proof: list[bytes], signed: bytes) -> bytes:
    return b"old %d\n" % old + b"".join(base64.b64encode(h) + b"\n" for h in proof) + b"\n" + signed


def check_cosignature(line: bytes, witness_vkey: str, text: bytes) -> int:
    """Verify one tlog-cosignature/v1 line; returns its timestamp."""
    name, kid_hex, key_b64 = witness_vkey.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] == 0x04 and len(key) == 33
    prefix = "\u2014 ".encode() + name.encode() + b" "
    assert line.startswith(prefix) and line.endswith(b"\n")
    payload = base64.b64decode(line[len(prefix):-1], validate=True)
    assert len(payload) == 4 + 8 + 64 and payload[:4].hex() == kid_hex == key_id(name, 4, key[1:]).hex()
    (timestamp,) = struct.unpack(">Q", payload[4:12])
    assert 0 < timestamp < 2**63
    message = b"cosignature/v1\ntime %d\n" % timestamp + text
    Ed25519PublicKey.from_public_bytes(key[1:]).verify(payload[12:], message)  # raises if bad
    return timestamp


# -- raw HTTP/1.1 ---------------------------------------------------------------------------

async def http(url: str, method: str, path: str, payload: bytes = b"") -> tuple[int, dict, bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n").encode()
    writer.write(head + payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    raw_head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 ")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        decoded = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        rest = decoded
    else:
        assert int(headers["content-length"]) == len(rest)
    return int(status_line.split()[1]), headers, rest


# -- the witness under test -----------------------------------------------------------------

LOG = RawKey("t.example/log", 1)
ODD = RawKey("t.example/key2", 2)            # a key not named like its origin
ODD_ORIGIN = "t.example/log2"
SPACED = RawKey("t.example/key3", 3)
SPACED_ORIGIN = "t.example/log with spaces"


@pytest.fixture
async def witness(tmp_path, capsys):
    datadir = make_datadir(tmp_path, name="witness", origin="witness.example/w1")
    config = datadir.config
    config.node.role = "witness"
    datadir.save_config(config)
    d = str(datadir.root)
    for origin, key in ((LOG.name, LOG), (ODD_ORIGIN, ODD), (SPACED_ORIGIN, SPACED)):
        assert cli_main(["witness", "logs", "add", "--dir", d, origin, key.vkey]) == 0
    capsys.readouterr()
    assert cli_main(["witness", "key", "--dir", d]) == 0
    vkey = capsys.readouterr().out.strip()
    node = await RunningNode(datadir).start("127.0.0.1", 0)
    node.cosigner = vkey
    yield node
    await node.stop()


async def add(node, payload: bytes) -> tuple[int, dict, bytes]:
    return await http(node.public_url, "POST", "/add-checkpoint", payload)


def monitor_path(origin: str) -> str:
    return "/" + hashlib.sha256(origin.encode()).hexdigest() + "/checkpoint"


# -- the rules ------------------------------------------------------------------------------

async def test_409_says_the_stored_size_and_nothing_else(witness):
    leaves = [leaf(i) for i in range(12)]
    status, _, _ = await add(witness, body(0, [], note(checkpoint_text(LOG.name, 7, mth(leaves[:7])), LOG)))
    assert status == 200
    for old in (0, 3, 12):
        status, headers, reply = await add(witness, body(old, [], note(checkpoint_text(LOG.name, 12, mth(leaves)),
                                                                       LOG)))
        assert status == 409
        assert headers["content-type"] == "text/x.tlog.size"
        assert reply == b"7\n"


async def test_1_same_size_other_root_is_422(witness):
    honest = [leaf(i) for i in range(9)]
    forked = [leaf(i, b"fork") for i in range(9)]
    assert (await add(witness, body(0, [], note(checkpoint_text(LOG.name, 9, mth(honest)), LOG))))[0] == 200
    status, headers, _ = await add(witness, body(9, [], note(checkpoint_text(LOG.name, 9, mth(forked)), LOG)))
    assert status == 422
    assert headers["content-type"] != "text/x.tlog.size"
    # The same checkpoint again is fine (and cosigned again).
    assert (await add(witness, body(9, [], note(checkpoint_text(LOG.name, 9, mth(honest)), LOG))))[0] == 200


async def test_2_empty_tree_with_another_root_is_422(witness):
    status, _, _ = await add(witness, body(0, [], note(checkpoint_text(LOG.name, 0, bytes(32)), LOG)))
    assert status == 422
    status, _, reply = await add(witness, body(0, [], note(checkpoint_text(LOG.name, 0, EMPTY), LOG)))
    assert status == 200


async def test_3_proof_lines_with_old_size_0_is_422(witness):
    leaves = [leaf(i) for i in range(5)]
    signed = note(checkpoint_text(LOG.name, 5, mth(leaves)), LOG)
    status, _, _ = await add(witness, body(0, [leaves[0]], signed))
    assert status == 422
    assert (await add(witness, body(0, [], signed)))[0] == 200


async def test_4_sixteen_signature_lines_are_accepted_and_only_verified_lines_kept(witness):
    strangers = [RawKey(f"stranger{i}.example", 100 + i) for i in range(15)]
    leaves = [leaf(i) for i in range(40)]
    text = checkpoint_text(LOG.name, 20, mth(leaves[:20]))
    signed = note(text, LOG, *strangers)
    assert signed.count("\u2014 ".encode()) == 16
    status, headers, reply = await add(witness, body(0, [], signed))
    assert status == 200, reply
    assert check_cosignature(reply, witness.cosigner, text) > 0
    # Served to monitors: the log's line and the witness's, nothing nobody verified.
    status, headers, served = await http(witness.public_url, "GET", monitor_path(LOG.name))
    assert status == 200
    served_text, _, sigs = served.partition(b"\n\n")
    assert served_text + b"\n" == text
    lines = sigs.splitlines(keepends=True)
    assert lines == [LOG.line(text), lines[1]] and check_cosignature(lines[1], witness.cosigner, text)
    # And it grows on from there, again with 16 lines.
    text2 = checkpoint_text(LOG.name, 40, mth(leaves))
    proof = consistency_proof(20, 40, leaves)
    status, _, reply = await add(witness, body(20, proof, note(text2, *strangers[:8], LOG, *strangers[8:])))
    assert status == 200, reply
    check_cosignature(reply, witness.cosigner, text2)


async def test_5_monitor_path_serves_the_cosigned_checkpoint(witness):
    leaves = [leaf(i) for i in range(3)]
    text = checkpoint_text(LOG.name, 3, mth(leaves))
    path = monitor_path(LOG.name)
    assert (await http(witness.public_url, "GET", path))[0] == 404          # nothing cosigned yet
    status, _, reply = await add(witness, body(0, [], note(text, LOG)))
    assert status == 200
    status, headers, served = await http(witness.public_url, "GET", path)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert served == note(text, LOG) + reply
    # The older path serves the very same bytes.
    status, _, same = await http(witness.public_url, "GET", "/witness/checkpoint?origin=t.example%2Flog")
    assert (status, same) == (200, served)
    # Upper-case hex, another origin's hash, a short hash: 404.
    for other in (path.upper().replace("/CHECKPOINT", "/checkpoint"), monitor_path("t.example/other"), path[:20]):
        assert (await http(witness.public_url, "GET", other))[0] == 404


async def test_6_key_names_and_origins_that_c2sp_allows(witness):
    for key, origin in ((ODD, ODD_ORIGIN), (SPACED, SPACED_ORIGIN)):
        leaves = [leaf(i, origin.encode()) for i in range(4)]
        text = checkpoint_text(origin, 4, mth(leaves))
        status, _, reply = await add(witness, body(0, [], note(text, key)))
        assert status == 200, reply
        check_cosignature(reply, witness.cosigner, text)
        status, _, served = await http(witness.public_url, "GET", monitor_path(origin))
        assert status == 200 and served == note(text, key) + reply
    # A key is trusted for the origin it was added for, not for its name's origin.
    text = checkpoint_text("t.example/key2", 1, leaf(0))
    assert (await add(witness, body(0, [], note(text, ODD))))[0] == 404
    # And a key configured for one origin cannot sign for another known origin.
    text = checkpoint_text(LOG.name, 1, leaf(0))
    assert (await add(witness, body(0, [], note(text, ODD))))[0] == 403
