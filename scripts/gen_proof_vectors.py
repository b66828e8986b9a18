#!/usr/bin/env python3
"""Generate the C2SP tlog-policy and tlog-proof test vectors in spec/vectors/.

  tlog-policy.json   {"valid": [{desc, hex, canonical_hex, quorum}],
                      "invalid": [{desc, hex, error}],          error: a substring of the message
                      "quorum": [{desc, policy, note, want}]}   want: "met" | "not met" | "rejected"
  tlog-proof.json    {"policy": <policy text>, "entries": [<hex>...],
                      "valid": [{desc, proof, origin, size, indices, witnesses}],
                      "invalid": [{desc, proof, error}]}        error: the exception class name

Output is deterministic (fixed seeds and timestamps, no randomness): tests/test_proof_vectors.py
checks the committed files equal what this script writes, and `ncii-node selftest` runs them.
Usage: scripts/gen_proof_vectors.py [--check]   (--check: exit 1 if the files are stale)
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from protocol.cosignature import CosignatureSigner  # noqa: E402
from protocol.merkle import leaf_hash, root_of  # noqa: E402
from protocol.note import Signer, add_signatures  # noqa: E402
from protocol.tlogproof import build_proofs  # noqa: E402

VECTOR_DIR = ROOT / "spec" / "vectors"
ORIGIN = "helpline.example/log"
# Fixed seeds: these keys exist only for the vectors (the first two are notes.md's examples).
LOG = Signer(ORIGIN, bytes(range(32)))
W1 = CosignatureSigner("witness.example/w1", bytes(range(32, 64)))
W2 = CosignatureSigner("witness.example/w2", bytes(range(64, 96)))
W3 = CosignatureSigner("witness.example/w3", bytes(range(96, 128)))
OTHER_LOG = Signer("other.example/log", bytes(range(128, 160)))
TIME = 1767225600  # 2026-01-01T00:00:00Z


def _policy(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def valid_policies() -> list[tuple[str, bytes]]:
    return [
        ("no cosignature needed", _policy("quorum none")),
        ("C2SP example: two groups of witnesses, both needed", _policy(
            "log " + LOG.verifier_key(), "",
            "witness X1 " + W1.verifier_key(), "witness X2 " + W2.verifier_key(),
            "group X-witnesses 2 X1 X2", "",
            "witness Y1 " + W3.verifier_key(), "group Y-witnesses any Y1", "",
            "group X-and-Y all X-witnesses Y-witnesses", "quorum X-and-Y")),
        ("comments, blank lines, tabs, leading and trailing white space, URLs", _policy(
            "# a comment", "   # an indented comment", "\t", "  log\t" + LOG.verifier_key() + "  https://h.example/log ",
            "witness\tw1 " + W1.verifier_key() + " https://w1.example/", "\tquorum   w1\t")),
        ("a single witness as quorum, lines in another order", _policy(
            "witness a " + W2.verifier_key(), "quorum a", "log " + LOG.verifier_key())),
        ("k written in decimal, with a leading zero", _policy(
            "witness a " + W1.verifier_key(), "witness b " + W2.verifier_key(), "group g 02 a b", "quorum g")),
        ("names are opaque octets: UTF-8 and a lone high byte",
         b"witness caf\xc3\xa9 " + W1.verifier_key().encode() + b"\nwitness \xff " + W2.verifier_key().encode()
         + b"\ngroup g all caf\xc3\xa9 \xff\nquorum g\n"),
    ]


def invalid_policies() -> list[tuple[str, bytes, str]]:
    w1, w2, log = W1.verifier_key(), W2.verifier_key(), LOG.verifier_key()
    return [
        ("empty file: no quorum", b"", "no quorum line"),
        ("no quorum line", _policy("witness a " + w1), "no quorum line"),
        ("two quorum lines", _policy("quorum none", "quorum none"), "second quorum"),
        ("quorum names nothing defined", _policy("quorum a"), "not none, nor a witness"),
        ("quorum names a witness defined below", _policy("quorum a", "witness a " + w1), "not none, nor a witness"),
        ("group member defined below", _policy("group g any a", "witness a " + w1, "quorum g"), "defined above"),
        ("group member listed twice", _policy("witness a " + w1, "group g any a a", "quorum g"), "twice"),
        ("group without members", _policy("witness a " + w1, "group g any", "quorum g"), "at least one member"),
        ("threshold 0", _policy("witness a " + w1, "group g 0 a", "quorum g"), "not between 1"),
        ("threshold above n", _policy("witness a " + w1, "group g 2 a", "quorum g"), "not between 1"),
        ("threshold not a number", _policy("witness a " + w1, "group g two a", "quorum g"), "not all, any"),
        ("negative threshold", _policy("witness a " + w1, "group g -1 a", "quorum g"), "not all, any"),
        ("none as a group member", _policy("witness a " + w1, "group g any a none", "quorum g"), "cannot be a group"),
        ("none redefined", _policy("witness none " + w1, "quorum none"), "predefined"),
        ("a name defined twice", _policy("witness a " + w1, "witness a " + w2, "quorum a"), "already defined"),
        ("a witness and a group of one name", _policy("witness a " + w1, "group a any a", "quorum a"),
         "already defined"),
        ("the same witness key twice, under two names", _policy(
            "witness a " + w1, "witness b " + CosignatureSigner("other.example/w", W1.seed).verifier_key(),
            "quorum a"), "same witness key"),
        ("the same log key twice, under two names", _policy(
            "log " + log, "log " + Signer("other.example/log", LOG.seed).verifier_key(), "quorum none"),
         "same log key"),
        ("a witness key (type 0x04) as log key", _policy("log " + w1, "quorum none"), "not a log key"),
        ("a log key (type 0x01) as witness key", _policy("witness a " + log, "quorum a"), "not a witness key"),
        ("a witness key whose key ID was altered", _policy(
            "witness a " + w1.replace(w1.split("+")[1], "00000000"), "quorum a"), "not a witness key"),
        ("a log line with a stray item", _policy("log " + log + " https://x.example extra", "quorum none"),
         "log line is"),
        ("a witness line without key", _policy("witness a", "quorum none"), "witness line is"),
        ("a quorum line with two names", _policy("witness a " + w1, "quorum a a"), "quorum line is"),
        ("an unknown line type", _policy("logs " + log, "quorum none"), "unknown line type"),
        ("a comment after an item", _policy("quorum none # no witnesses"), "quorum line is"),
        ("Windows line ends", b"quorum none\r\n", "Windows line ends"),
        ("a NUL byte", b"# \x00\nquorum none\n", "control byte 0x00"),
        ("a DEL byte", b"# \x7f\nquorum none\n", "control byte 0x7f"),
        ("no newline after the last line", b"quorum none", "must end with a newline"),
    ]


def checkpoint(size: int) -> tuple[Checkpoint, bytes]:
    cp = Checkpoint(ORIGIN, size, root_of([leaf_hash(b"vector entry %d" % i) for i in range(size)]))
    return cp, sign_checkpoint(cp, LOG)


def cosigned(size: int, *witnesses: CosignatureSigner) -> bytes:
    cp, note = checkpoint(size)
    return add_signatures(note, [w.cosign(cp.to_text(), TIME + i) for i, w in enumerate(witnesses)]) \
        if witnesses else note


def quorum_vectors() -> list[dict]:
    two_of_three = _policy("log " + LOG.verifier_key(), "witness a " + W1.verifier_key(),
                           "witness b " + W2.verifier_key(), "witness c " + W3.verifier_key(),
                           "group g 2 a b c", "quorum g")
    nested = _policy("witness a " + W1.verifier_key(), "witness b " + W2.verifier_key(),
                     "witness c " + W3.verifier_key(), "group ab any a b", "group both all ab c", "quorum both")
    cp, plain = checkpoint(7)
    bad_line = W2.cosign(cp.to_text(), TIME).replace(W2.cosign(cp.to_text(), TIME)[-8:], "AAAAAAA=")
    twice = add_signatures(plain, [W1.cosign(cp.to_text(), TIME)])
    twice = twice + W1.cosign(cp.to_text(), TIME + 1).encode() + b"\n"   # a second line by the same witness
    stranger = CosignatureSigner("stranger.example/w", bytes(range(160, 192)))
    rows = [
        ("quorum none: a checkpoint with no cosignature", _policy("quorum none"), plain, "met"),
        ("2 of 3: one cosignature", two_of_three, cosigned(7, W1), "not met"),
        ("2 of 3: two cosignatures", two_of_three, cosigned(7, W1, W3), "met"),
        ("2 of 3: three cosignatures", two_of_three, cosigned(7, W1, W2, W3), "met"),
        ("2 of 3: one witness's two lines count once", two_of_three, twice, "not met"),
        ("2 of 3: a cosignature by a key outside the policy is ignored", two_of_three,
         cosigned(7, W1, stranger), "not met"),
        ("2 of 3: a policy witness's line that does not verify rejects the note", two_of_three,
         add_signatures(cosigned(7, W1, W3), [bad_line]), "rejected"),
        ("2 of 3: cosignatures made for another checkpoint", two_of_three,
         add_signatures(plain, [W1.cosign(checkpoint(8)[0].to_text(), TIME),
                                W3.cosign(checkpoint(8)[0].to_text(), TIME)]), "rejected"),
        ("nested: (a or b) and c, with b and c", nested, cosigned(7, W2, W3), "met"),
        ("nested: (a or b) and c, with a and b", nested, cosigned(7, W1, W2), "not met"),
        ("policy log: signed by another log's key", two_of_three,
         add_signatures(sign_checkpoint(Checkpoint("other.example/log", 7, cp.root_hash), OTHER_LOG),
                        [W1.cosign(Checkpoint("other.example/log", 7, cp.root_hash).to_text(), TIME),
                         W2.cosign(Checkpoint("other.example/log", 7, cp.root_hash).to_text(), TIME)]), "rejected"),
    ]
    return [{"desc": d, "policy": p.decode(), "note": n.decode(), "want": w} for d, p, n, w in rows]


# -- tlog-proof ----------------------------------------------------------------------------

def proof_log() -> tuple[list[bytes], bytes]:
    entries = [bytes.fromhex(v["hex"]) for v in json.loads((VECTOR_DIR / "entries.json").read_text())
               if len(v["hex"]) < 400][:10]
    leaves = [leaf_hash(e) for e in entries]
    cp = Checkpoint(ORIGIN, len(entries), root_of(leaves))
    note = add_signatures(sign_checkpoint(cp, LOG), [W1.cosign(cp.to_text(), TIME), W2.cosign(cp.to_text(), TIME)])
    return entries, note


def _node_getter(entries):
    leaves = [leaf_hash(e) for e in entries]
    return lambda level, index: root_of(leaves[index << level:(index + 1) << level])


PROOF_POLICY = _policy("log " + LOG.verifier_key(), "witness w1 " + W1.verifier_key(),
                       "witness w2 " + W2.verifier_key(), "witness w3 " + W3.verifier_key(),
                       "group two 2 w1 w2 w3", "quorum two")


def proof_vectors() -> dict:
    entries, note = proof_log()
    nodes = _node_getter(entries)

    def proof(*indices, note=note, include=True) -> bytes:
        return build_proofs(note, {i: entries[i] for i in indices}, nodes, include_entries=include).to_bytes()

    one, bundle = proof(3), proof(0, 4, 9)
    cp_text = note.split(b"\n\n")[0] + b"\n"
    hash_line = one.split(b"\n")[3]
    valid = [
        ("one entry: a C2SP tlog-proof", one, [3]),
        ("the first entry", proof(0), [0]),
        ("the last entry (its proof is shorter)", proof(9), [9]),
        ("three entries under one checkpoint", bundle, [0, 4, 9]),
        ("unknown signature lines are ignored", one + "\u2014 stranger.example AAAAAAAAAAAAAAAA\n".encode(), [3]),
    ]
    flipped = one.replace(hash_line, base64.b64encode(bytes([base64.b64decode(hash_line)[0] ^ 1])
                                                      + base64.b64decode(hash_line)[1:]))
    other_entry = entries[4]
    invalid = [
        ("no header", one.split(b"\n", 1)[1], "format"),
        ("another header", b"c2sp.org/tlog-proof@v2\n" + one.split(b"\n", 1)[1], "format"),
        ("index with a leading zero", one.replace(b"\nindex 3\n", b"\nindex 03\n"), "format"),
        ("index missing", one.replace(b"\nindex 3\n", b"\n"), "format"),
        ("extra data not canonical base64", one.replace(b"\nextra ", b"\nextra =", 1), "format"),
        ("empty extra data", b"c2sp.org/tlog-proof@v1\nextra \n" + one.split(b"\n", 2)[2], "format"),
        ("a proof line that is not a hash", one.replace(hash_line, hash_line[:-4]), "format"),
        ("more than 63 proof lines", one.replace(hash_line, b"\n".join([hash_line] * 64)), "format"),
        ("no empty line before the checkpoint", one.replace(b"\n\n", b"\n", 1), "format"),
        ("the C2SP header with two entries", bundle.replace(b"ncii-node/tlog-proofs@v1", b"c2sp.org/tlog-proof@v1"),
         "format"),
        ("our bundle header with one entry", one.replace(b"c2sp.org/tlog-proof@v1", b"ncii-node/tlog-proofs@v1"),
         "format"),
        ("indices not increasing", b"ncii-node/tlog-proofs@v1\n" + b"\n".join(
            proof(9).split(b"\n\n")[0].split(b"\n")[1:] + proof(4).split(b"\n\n")[0].split(b"\n")[1:])
         + b"\n\n" + note, "format"),
        ("no entry and none given", proof(3, include=False), "format"),
        ("the checkpoint is not a signed note", one.split(b"\n\n")[0] + b"\n\n" + cp_text, "format"),
        ("a proof hash altered", flipped, "inclusion"),
        ("another entry in place of the proven one", one.replace(base64.b64encode(entries[3]),
                                                                 base64.b64encode(other_entry)), "inclusion"),
        ("another index for the same proof", one.replace(b"\nindex 3\n", b"\nindex 2\n"), "inclusion"),
        ("an index beyond the tree", one.replace(b"\nindex 3\n", b"\nindex 10\n"), "inclusion"),
        ("one cosignature where the policy wants two", one.rsplit("\u2014".encode(), 1)[0],
         "quorum"),
        ("a cosignature altered", one[:-10] + (b"A" if one[-10:-9] != b"A" else b"B") + one[-9:],
         "cosignature"),
        ("the log's signature missing", one.replace(one.split(b"\n\n")[2].split(b"\n")[0] + b"\n", b""),
         "signature"),
        ("the checkpoint text altered", one.replace(b"\n10\n", b"\n11\n"), "signature"),
    ]
    return {
        "policy": PROOF_POLICY.decode(),
        "entries": [e.hex() for e in entries],
        "valid": [{"desc": d, "proof": p.decode(), "origin": ORIGIN, "size": len(entries), "indices": i,
                   "witnesses": ["w1", "w2"]} for d, p, i in valid],
        "invalid": [{"desc": d, "proof": p.decode("utf-8", "replace"), "error": e} for d, p, e in invalid],
    }


def policy_vectors() -> dict:
    from protocol.policy import parse_policy

    valid = []
    for desc, data in valid_policies():
        policy = parse_policy(data)
        valid.append({"desc": desc, "hex": data.hex(), "canonical_hex": policy.to_bytes().hex(),
                      "quorum": policy.describe().encode("utf-8", "surrogateescape").decode("utf-8", "replace")})
    return {"valid": valid,
            "invalid": [{"desc": d, "hex": p.hex(), "error": e} for d, p, e in invalid_policies()],
            "quorum": quorum_vectors()}


def render() -> dict[str, str]:
    return {name: json.dumps(doc, indent=1, ensure_ascii=False) + "\n" for name, doc in
            (("tlog-policy.json", policy_vectors()), ("tlog-proof.json", proof_vectors()))}


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [n for n, text in files.items() if (VECTOR_DIR / n).read_text(encoding="utf-8") != text]
        if stale:
            print(f"stale: {', '.join(stale)}; run scripts/gen_proof_vectors.py", file=sys.stderr)
            return 1
        return 0
    for name, text in files.items():
        (VECTOR_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote spec/vectors/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
