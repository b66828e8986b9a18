"""The seed corpus of each harness: spec/vectors/, ../shared/conformance/ and valid
values made with protocol/ from fuzz/fixtures.py, so that mutation starts from inputs
that reach deep into each parser instead of failing at its first byte.

`seeds(name)` gives the seeds of one harness; `write_seeds(name, directory)` stores
them as files named by their SHA-256 (libFuzzer's own naming), replacing old ones.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from fuzz import fixtures as fx

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "spec" / "vectors"
CONFORMANCE = REPO.parent / "shared" / "conformance"


def _json_file(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


@functools.cache
def _entry_vectors() -> list[dict]:
    valid = _json_file(VECTORS / "entries.json") or []
    invalid = _json_file(VECTORS / "entries-invalid.json") or []
    return valid + invalid


def _valid_entries() -> list[bytes]:
    return [bytes.fromhex(v["hex"]) for v in _json_file(VECTORS / "entries.json") or []]


def _conformance_notes() -> dict:
    return _json_file(CONFORMANCE / "note" / "signed-notes.json") or {"keys": {}, "vectors": []}


def _our_notes() -> list[bytes]:
    from protocol.note import sign_note

    tree = fx.tree()
    notes = [tree.checkpoint(size) for size in (0, 1, 5, 8, 300, 65_536)]
    notes.append(fx.cosigned(tree.checkpoint(8)))
    notes.append(sign_note(f"{fx.LOG_ORIGIN}\n8\n{base64.b64encode(tree.root(8)).decode()}\nextension line\n",
                           [fx.LOG_SIGNER, fx.OTHER_SIGNER]))
    notes.append(tree.checkpoint(8, fx.OTHER_SIGNER))
    return notes


def note() -> Iterator[bytes]:
    for vector in _conformance_notes()["vectors"]:
        yield vector["note"].encode("utf-8")
    yield from _our_notes()


def keys() -> Iterator[bytes]:
    from node.readaccess import RequestSigner

    yield from (value.encode() for value in _conformance_notes()["keys"].values())
    for vector in _conformance_notes()["vectors"]:
        yield from (key.encode() for key in vector.get("verifier_keys", []))
    yield fx.LOG_SIGNER.verifier_key().encode()
    yield fx.WITNESS_SIGNER.verifier_key().encode()
    yield fx.LOG_SIGNER.to_go_private_key().encode()
    yield fx.LOG_SIGNER.to_key_file()
    yield fx.WITNESS_SIGNER.to_key_file()
    yield RequestSigner.from_seed(fx.READER_NAME, fx.READER_SEED).keyid.encode()


def checkpoint() -> Iterator[bytes]:
    yield from note()
    for vector in _conformance_notes()["vectors"]:
        if vector.get("want_text"):
            yield vector["want_text"].encode("utf-8")


def cosignature() -> Iterator[bytes]:
    tree = fx.tree()
    for size in (1, 8, 300):
        cosigned = fx.cosigned(tree.checkpoint(size))
        yield cosigned
        yield cosigned.rsplit(b"\n", 2)[-2]  # the cosignature line alone


def tile_path() -> Iterator[bytes]:
    from protocol.tiles import bundles_for_size, tiles_for_size

    for size in (1, 255, 256, 70_000, 16_777_217):
        for ident in tiles_for_size(size)[-6:] + bundles_for_size(size)[-3:]:
            yield ident.path().encode()
            yield b"/" + ident.path().encode()
    yield b"tile/0/x001/x234/067"
    yield b"tile/entries/x018/x446/x744/x073/x709/x551/615.p/255"


def tiles() -> Iterator[bytes]:
    from protocol.tiles import tiles_for_update

    tree = fx.tree()
    for old, size in ((0, 1), (0, 5), (5, 8), (0, 300), (255, 256), (256, 513), (300, 700), (65_530, 65_540),
                      (65_536, 65_836), (65_700, 65_836), (65_835, 65_836)):
        data = size.to_bytes(3, "big") + old.to_bytes(3, "big")
        data += b"".join(tree.tile(t) for t in tiles_for_update(old, size))
        if len(data) <= 64 * 1024:
            yield data


def bundle() -> Iterator[bytes]:
    from protocol.tiles import encode_bundle

    entries = _valid_entries()
    if entries:
        yield encode_bundle(entries)
        yield encode_bundle(entries[:1])
        yield encode_bundle([entries[0]] * 256)
    yield encode_bundle([b"", b"\x01"])


def entry() -> Iterator[bytes]:
    for vector in _entry_vectors():
        if "hex" in vector:
            yield bytes.fromhex(vector["hex"])


def entry_json() -> Iterator[bytes]:
    for vector in _entry_vectors():
        if "json" in vector:
            yield json.dumps(vector["json"]).encode()


def append() -> Iterator[bytes]:
    lines = [json.dumps(v["json"]) for v in _json_file(VECTORS / "entries.json") or [] if "json" in v]
    yield ("\n".join(lines) + "\n").encode()
    yield b'{"kind": "withdrawal", "targets": [3, 999]}\n\n'
    yield b'{"kind": "submission", "signal": "md5", "fingerprint": "9e107d9d372bb6826bd81d3542a419d6"}'


def signal_bytes() -> Iterator[bytes]:
    from protocol.signals import SIGNALS

    for signal in SIGNALS.values():
        for example in signal.examples():
            yield bytes([signal.code - 1]) + example


def _fingerprint_objects() -> list[dict]:
    from protocol.signals import SIGNALS

    out = []
    for signal in SIGNALS.values():
        for example in signal.examples():
            obj = {"signal": signal.name, "fingerprint": signal.to_json(example)}
            if signal.has_quality:
                obj["quality"] = 90
            out.append(obj)
    return out


def signal_json() -> Iterator[bytes]:
    objects = _fingerprint_objects()
    for obj in objects:
        yield json.dumps(obj).encode()
    yield json.dumps({"fingerprints": objects}).encode()
    yield json.dumps(objects).encode()


def signal_text() -> Iterator[bytes]:
    from protocol.signals import MD5, PDQ

    for signal in (PDQ, MD5):
        for example in signal.examples():
            yield example.hex().encode()
            yield b"  " + example.hex().upper().encode() + b"\n"


def case_body() -> Iterator[bytes]:
    from node.cases.eligibility import QUESTIONS

    yes = dict.fromkeys(QUESTIONS, True)
    objects = [o for o in _fingerprint_objects() if o["fingerprint"] != "d41d8cd98f00b204e9800998ecf8427e"]
    yield json.dumps({"eligibility": yes, "fingerprints": objects, "lang": "en"}).encode()
    yield json.dumps({"eligibility": {**yes, "adult": False}, "fingerprints": objects[:1], "country": "FR"}).encode()
    yield json.dumps({"case_number": "7K2Q-M9XD-4TPA-RW3V", "pin": "1234 5678", "lang": "fr"}).encode()


def add_checkpoint() -> Iterator[bytes]:
    from node.witness.addcheckpoint import encode_request
    from protocol.merkle import consistency_proof

    tree = fx.tree()
    stored = 5  # harnesses.WITNESS_STORED_SIZE

    def proof(old: int, new: int) -> list[bytes]:
        return consistency_proof(old, new, tree.node_at)

    yield encode_request(stored, proof(stored, 8), tree.checkpoint(8))              # 200
    yield encode_request(stored, proof(stored, 300), fx.cosigned(tree.checkpoint(300)))
    yield encode_request(stored, [], tree.checkpoint(stored))                      # 200, same
    yield encode_request(0, [], tree.checkpoint(8))                                 # 409: wrong old size
    yield encode_request(stored, [], fx.forked_tree().checkpoint(stored))           # 409: split view
    yield encode_request(stored, proof(4, 8), tree.checkpoint(8))                   # 422
    yield encode_request(stored, proof(stored, 8), tree.checkpoint(8, fx.OTHER_SIGNER))  # 403
    yield encode_request(9, [], tree.checkpoint(8))                                 # 400


def witness_reply() -> Iterator[bytes]:
    from fuzz.harnesses import WITNESS_REPLY_TEXT

    line = fx.WITNESS_SIGNER.cosign(WITNESS_REPLY_TEXT, fx.COSIGNED_AT).encode()
    other = fx.WITNESS_SIGNER.cosign(WITNESS_REPLY_TEXT, fx.COSIGNED_AT + 60).encode()
    yield line + b"\n"
    yield line + b"\n" + other + b"\n"


def request_signature() -> Iterator[bytes]:
    from fuzz.harnesses import signed_request_headers

    yield signed_request_headers()
    yield signed_request_headers("another-nonce-of-some-length-0123")


def forwarded_for() -> Iterator[bytes]:
    yield b"127.0.0.1\n192.0.2.1, 10.0.0.2"
    yield b"[::1]:4711\n2001:db8::1\n::ffff:10.0.0.3"
    yield b"192.0.2.9:80\nunknown"


def config() -> Iterator[bytes]:
    from node.config import Config, dump_config

    cfg = Config()
    cfg.node.origin = "example.org/helpline"
    yield dump_config(cfg).encode()
    cfg.http.trusted_proxies = ["10.0.0.0/8", "::1"]
    cfg.node.role = "platform"
    yield dump_config(cfg).encode()
    yield b'[node]\norigin = "x"\n[log]\nsequencing_interval = 0.5\n'


def _evidence_documents() -> list[str]:
    from protocol import evidence

    tree, forked = fx.tree(), fx.forked_tree()
    vkey = fx.LOG_SIGNER.verifier_key()
    docs = [
        evidence.check_pair(vkey, tree.checkpoint(8), forked.checkpoint(8), None, ["a", "b"]),
        evidence.check_pair(vkey, forked.checkpoint(5), tree.checkpoint(300), tree.node_at, ["a", "b"]),
    ]
    return [evidence.dumps(doc) for doc in docs if doc is not None]


def evidence() -> Iterator[bytes]:
    for doc in _evidence_documents():
        yield doc.encode()


def gossip_seen() -> Iterator[bytes]:
    tree = fx.tree()
    checkpoints = [{"origin": fx.LOG_ORIGIN, "size": size, "note": tree.checkpoint(size).decode(),
                    "source": "follower", "seen_at": 1_700_000_000} for size in (8, 300)]
    yield json.dumps({"node": "peer.example/log", "checkpoints": checkpoints}).encode()


def node_json() -> Iterator[bytes]:
    yield json.dumps({"origin": fx.LOG_ORIGIN, "role": "helpline", "display_name": "", "contact": "",
                      "verifier_key": fx.LOG_SIGNER.verifier_key(), "request_key": "", "public_read": False}).encode()


def merkle() -> Iterator[bytes]:
    def pack(size1: int, size2: int, index: int, root1: str, root2: str, proof: list[str]) -> bytes:
        head = b"".join(n.to_bytes(8, "big") for n in (size1, size2, index))
        hashes = [base64.b64decode(h) for h in [root1, root2, *proof]]
        return head + b"".join(h.ljust(32, b"\0")[:32] for h in hashes)

    root = CONFORMANCE / "merkle"
    for path in sorted(root.glob("consistency/*/*.json"))[:60]:
        v = json.loads(path.read_text())
        try:
            yield pack(v["size1"], v["size2"], 0, v["root1"] or "", v["root2"] or "", v["proof"] or [])
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
    for path in sorted(root.glob("inclusion/*/*.json"))[:60]:
        v = json.loads(path.read_text())
        try:
            yield pack(0, v["treeSize"], v["leafIdx"], v["leafHash"] or "", v["root"] or "", v["proof"] or [])
        except (KeyError, TypeError, ValueError, OverflowError):
            continue


def policy() -> Iterator[bytes]:
    vectors = _json_file(VECTORS / "tlog-policy.json") or {}
    for vector in vectors.get("valid", []) + vectors.get("invalid", []):
        yield bytes.fromhex(vector["hex"])
    for vector in vectors.get("quorum", []):
        yield vector["policy"].encode()


def tlog_proof() -> Iterator[bytes]:
    vectors = _json_file(VECTORS / "tlog-proof.json") or {}
    for vector in vectors.get("valid", []) + vectors.get("invalid", []):
        if isinstance(vector.get("proof"), str):
            yield vector["proof"].encode("utf-8")


def media() -> Iterator[bytes]:
    from PIL import Image

    for path in sorted((CONFORMANCE / "pdq").rglob("*")):
        if path.suffix.lower() in (".jpg", ".png", ".webp", ".gif") and path.stat().st_size <= 64 * 1024:
            yield path.read_bytes()
    picture = Image.linear_gradient("L").resize((32, 24)).convert("RGB")
    for fmt in ("PNG", "GIF", "BMP", "WEBP", "TIFF", "JPEG"):
        out = io.BytesIO()
        picture.save(out, fmt)
        yield out.getvalue()
    yield _tiny_video()


def _tiny_video() -> bytes:
    """A 3-frame 32x32 MPEG-4 video, made with PyAV (as the node's decoder reads it)."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def _parts_body() -> bytes:
    from node.follow.push import encode_parts
    from protocol.tiles import TileId

    tree = fx.tree()
    tiles = [(TileId(0, 0, 8).path(), tree.tile(TileId(0, 0, 8))), (TileId(0, 1, 44).path(), tree.tile(TileId(0, 1, 44)))]
    return encode_parts(tree.checkpoint(300), tiles)


def push_parts() -> Iterator[bytes]:
    from node.follow.push import encode_parts

    yield _parts_body()
    yield encode_parts(fx.tree().checkpoint(8), [])
    yield encode_parts(fx.tree().checkpoint(8), [("tile/entries/000.p/8", b"\0\x05hello" * 8)])


def push_stream() -> Iterator[bytes]:
    from node.follow.push import encode_frame, encode_parts

    frames = encode_frame(_parts_body()) + encode_frame(b"") + encode_frame(encode_parts(fx.tree().checkpoint(8), []))
    for step in (0, 3, 16):
        yield bytes([step]) + frames


def _member_list():
    from node.federation.members import make_list
    from node.invitation import Invitation

    return make_list(fx.LIST_FEDERATION, 7, [Invitation(**fx.member_line_fields(n)) for n in range(3)])


def member_list() -> Iterator[bytes]:
    from node.federation.members import sign_list

    listed = _member_list()
    yield listed.text().encode()
    yield sign_list(listed, fx.LIST_SIGNERS)
    yield sign_list(listed, fx.LIST_SIGNERS[:1])


def list_log() -> Iterator[bytes]:
    from node.federation.listlog import sign_list_checkpoint, version_entry

    version = version_entry(_member_list())
    yield version.to_bytes()
    from protocol.merkle import leaf_hash

    note = sign_list_checkpoint(fx.LIST_FEDERATION, 1, leaf_hash(version.to_bytes()), fx.LIST_SIGNERS)
    yield note
    yield fx.cosigned(note)


def ack_evidence() -> Iterator[bytes]:
    """A real document: the platform acknowledged the forked tree's first 5 entries;
    the log's signed tree of 300 begins otherwise."""
    from protocol.ack_evidence import build_ack_evidence
    from protocol.acknowledgements import acknowledge
    from protocol.entries import encode_entry
    from protocol.merkle import leaf_hash
    from protocol.checkpoint import Checkpoint, sign_checkpoint
    from protocol.tlogproof import build_proofs

    tree, forked = fx.tree(), fx.forked_tree()
    ack = acknowledge(fx.PLATFORM_ACK_SIGNER, Checkpoint(fx.LOG_ORIGIN, 5, forked.root(5)), 1_700_000_000_123)
    entry = encode_entry(ack)
    platform_note = sign_checkpoint(Checkpoint(fx.PLATFORM_ORIGIN, 1, leaf_hash(entry)), fx.PLATFORM_SIGNER)
    proof = build_proofs(platform_note, {0: entry}, lambda level, index: leaf_hash(entry)).to_bytes()
    for size in (300, 5):
        doc = build_ack_evidence(fx.LOG_SIGNER.verifier_key(), tree.checkpoint(size), size, tree.node_at, ack,
                                 fx.PLATFORM_ORIGIN, fx.PLATFORM_SIGNER.verifier_key(), proof, ["fuzz"],
                                 now=1_700_000_100)
        yield json.dumps(doc).encode()


def invitation() -> Iterator[bytes]:
    from node.invitation import Invitation

    for n in range(2):
        yield Invitation(**fx.member_line_fields(n)).encode().encode()
    yield b"  " + Invitation(**fx.member_line_fields(2)).encode().encode() + b"\n"


def seeds(name: str) -> list[bytes]:
    """The seeds of harness `name`, each at most that harness's max_len."""
    from fuzz.harnesses import HARNESSES

    limit = HARNESSES[name].max_len
    return [s for s in dict.fromkeys(globals()[name]()) if len(s) <= limit]


def write_seeds(name: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    items = seeds(name)
    for data in items:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(items)


def all_seeds(names: Iterable[str]) -> dict[str, list[bytes]]:
    return {name: seeds(name) for name in names}
