"""`ncii-node selftest`: run every test vector the project can find, print a summary.

Sources: the project's own vectors in `spec/vectors/` and, where it exists, the shared
conformance data (`../shared/conformance`): signed notes, RFC 6962 roots, inclusion and
consistency proofs, PDQ reference hashes and video MD5s. Each family is a function that
yields (name, ok, detail) rows, so a broken family shows up as failures, not a crash.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol import merkle, note
from protocol.entries import decode_entry, encode_entry, entry_from_json, entry_to_json
from protocol.errors import ProtocolError

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "spec" / "vectors"
CONFORMANCE = REPO.parent / "shared" / "conformance"

Row = tuple[str, bool, str]


@dataclass
class FamilyResult:
    name: str
    passed: int
    failed: list[tuple[str, str]]
    skipped: str | None = None


def _b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def entry_vectors() -> Iterator[Row]:
    for vector in json.loads((VECTORS / "entries.json").read_text()):
        desc = vector["desc"]
        try:
            data = bytes.fromhex(vector["hex"])
            ok = (
                encode_entry(entry_from_json(vector["json"])) == data
                and entry_to_json(decode_entry(data)) == vector["json"]
                and merkle.leaf_hash(data).hex() == vector["leaf_hash"]
            )
            yield desc, ok, "" if ok else "bytes, JSON view or leaf hash differ"
        except ProtocolError as exc:
            yield desc, False, str(exc)
    for vector in json.loads((VECTORS / "entries-invalid.json").read_text()):
        try:
            decode_entry(bytes.fromhex(vector["hex"]))
            yield vector["desc"], False, "decoded, but must be rejected"
        except ProtocolError as exc:
            ok = exc.offset == vector.get("error_offset", exc.offset)
            yield vector["desc"], ok, "" if ok else f"rejected at {exc.offset}, expected {vector['error_offset']}"


def note_vectors() -> Iterator[Row]:
    data = json.loads((CONFORMANCE / "note" / "signed-notes.json").read_text())
    for vector in data["vectors"]:
        desc = vector["desc"]
        try:
            verifiers = [note.Verifier.from_vkey(k) for k in vector["verifier_keys"]]
            opened = note.open_note(vector["note"].encode(), verifiers)
        except ProtocolError as exc:
            yield desc, vector["want_error"], "" if vector["want_error"] else f"rejected: {exc}"
            continue
        if vector["want_error"]:
            yield desc, False, "accepted, but must be rejected"
            continue
        names = sorted(v.name for v in opened.verified_by)
        ok = opened.text == vector["want_text"] and names == sorted(vector["want_verified_by"])
        yield desc, ok, "" if ok else f"text or verifiers differ: {names}"


def merkle_roots() -> Iterator[Row]:
    data = json.loads((CONFORMANCE / "merkle" / "rfc6962-roots.json").read_text())
    leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in data["leaf_inputs_hex"]]
    for size, want in enumerate(data["root_hashes_hex_by_tree_size"]):
        got = merkle.root_of(leaves[:size]).hex()
        yield f"root of size {size}", got == want, "" if got == want else f"got {got}"


def merkle_proofs() -> Iterator[Row]:
    base = CONFORMANCE / "merkle"
    for path in sorted((base / "inclusion").rglob("*.json")):
        v = json.loads(path.read_text())
        name = f"inclusion/{path.relative_to(base / 'inclusion')}"
        try:
            merkle.verify_inclusion(
                _b64(v["leafHash"]) if v.get("leafHash") else b"",
                v["leafIdx"], v["treeSize"], [_b64(p) for p in v.get("proof") or []],
                _b64(v["root"]) if v.get("root") else b"",
            )
            yield name, not v["wantErr"], "verified, but must fail" if v["wantErr"] else ""
        except ProtocolError as exc:
            yield name, v["wantErr"], "" if v["wantErr"] else str(exc)
    for path in sorted((base / "consistency").rglob("*.json")):
        v = json.loads(path.read_text())
        name = f"consistency/{path.relative_to(base / 'consistency')}"
        try:
            merkle.verify_consistency(
                v["size1"], v["size2"], [_b64(p) for p in v.get("proof") or []],
                _b64(v["root1"]) if v.get("root1") else b"",
                _b64(v["root2"]) if v.get("root2") else b"",
            )
            yield name, not v["wantErr"], "verified, but must fail" if v["wantErr"] else ""
        except ProtocolError as exc:
            yield name, v["wantErr"], "" if v["wantErr"] else str(exc)


def pdq_reference() -> Iterator[Row]:
    from protocol.signals import SIGNALS
    from node.hashing import hash_file

    pdq = SIGNALS["pdq"]
    base = CONFORMANCE / "pdq"
    with open(base / "expected-hashes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ours: dict[str, list[dict]] = {}
    for row in rows:
        name = f"{row['path']} vs {row['produced_by']}"
        if row["path"] not in ours:
            ours[row["path"]] = hash_file(base / row["path"])
        got = [fp for fp in ours[row["path"]] if fp["signal"] == "pdq"]
        if not got:
            yield name, False, "no PDQ computed"
            continue
        quality = got[0].get("quality") or 0
        distance = pdq.distance(pdq.parse_json(got[0]["fingerprint"]), pdq.parse_json(row["pdq_hex"]))
        # PDQ's own rule: quality >= 80 stays within distance 10 of the reference.
        ok = quality < 80 or distance <= 10
        yield name, ok, f"distance {distance}" if not ok else ""


def video_md5() -> Iterator[Row]:
    from node.hashing import hash_file

    for path in sorted((CONFORMANCE / "video").glob("*")):
        want = hashlib.md5(path.read_bytes()).hexdigest()
        got = [fp["fingerprint"] for fp in hash_file(path) if fp["signal"] == "md5"]
        yield path.name, got == [want], "" if got == [want] else f"got {got}"


def policy_vectors() -> Iterator[Row]:
    from protocol.policy import QuorumNotMet, check_quorum, parse_policy, verify_checkpoint

    doc = json.loads((VECTORS / "tlog-policy.json").read_text(encoding="utf-8"))
    for v in doc["valid"]:
        try:
            policy = parse_policy(bytes.fromhex(v["hex"]))
            ok = policy.to_bytes().hex() == v["canonical_hex"] and parse_policy(policy.to_bytes()) == policy
            yield v["desc"], ok, "" if ok else "printed back differently"
        except ProtocolError as exc:
            yield v["desc"], False, f"rejected: {exc}"
    for v in doc["invalid"]:
        try:
            parse_policy(bytes.fromhex(v["hex"]))
            yield v["desc"], False, "accepted, but must be rejected"
        except ProtocolError as exc:
            yield v["desc"], v["error"] in str(exc), f"rejected for another reason: {exc}"
    for v in doc["quorum"]:
        policy = parse_policy(v["policy"].encode())
        note_bytes = v["note"].encode()
        try:
            if policy.logs:
                verify_checkpoint(policy, note_bytes)
                got = "met"
            else:
                got = "met" if check_quorum(policy, note_bytes).met else "not met"
        except QuorumNotMet:
            got = "not met"
        except ProtocolError:
            got = "rejected"
        yield f"quorum: {v['desc']}", got == v["want"], "" if got == v["want"] else f"{got}, expected {v['want']}"


def proof_vectors() -> Iterator[Row]:
    from protocol.policy import parse_policy
    from protocol.tlogproof import failure_kind, verify_proofs

    doc = json.loads((VECTORS / "tlog-proof.json").read_text(encoding="utf-8"))
    policy = parse_policy(doc["policy"].encode())
    for v in doc["valid"]:
        try:
            got = verify_proofs(v["proof"].encode(), policy)
            ok = (got.checkpoint.origin, got.checkpoint.size, [e.index for e in got.entries],
                  sorted(got.quorum.cosigned)) == (v["origin"], v["size"], v["indices"], v["witnesses"])
            ok = ok and all(e.entry == bytes.fromhex(doc["entries"][e.index]) for e in got.entries)
            yield v["desc"], ok, "" if ok else "verified, but proves something else"
        except ProtocolError as exc:
            yield v["desc"], False, f"rejected: {exc}"
    for v in doc["invalid"]:
        try:
            verify_proofs(v["proof"].encode(), policy)
            yield v["desc"], False, "verified, but must be rejected"
        except ProtocolError as exc:
            kind = failure_kind(exc)
            yield v["desc"], kind == v["error"], "" if kind == v["error"] else f"{kind} ({exc}), expected {v['error']}"


def proofs_over_shared_inclusion_vectors() -> Iterator[Row]:
    """C2SP tlog-proofs made of the shared RFC 6962 inclusion vectors and checkpoints
    signed with the shared Go-generated log key: each verifies iff its vector does."""
    from protocol.checkpoint import Checkpoint, sign_checkpoint
    from protocol.policy import parse_policy
    from protocol.tlogproof import EntryProof, TlogProofs, verify_proofs

    keys = json.loads((CONFORMANCE / "note" / "signed-notes.json").read_text())["keys"]
    signer = note.Signer.from_go_private_key(keys["log_skey_go_format"])
    policy = parse_policy(f"log {keys['log_vkey']}\nquorum none\n".encode())
    for path in sorted((CONFORMANCE / "merkle" / "inclusion").rglob("*.json")):
        v = json.loads(path.read_text())
        name = f"tlog-proof of inclusion/{path.relative_to(CONFORMANCE / 'merkle' / 'inclusion')}"
        try:
            cp = Checkpoint(signer.name, v["treeSize"], _b64(v["root"]) if v.get("root") else b"")
            proof = TlogProofs((EntryProof(v["leafIdx"], tuple(_b64(h) for h in v.get("proof") or [])),),
                               sign_checkpoint(cp, signer)).to_bytes()
            verify_proofs(proof, policy, leaf_hashes={v["leafIdx"]: _b64(v["leafHash"]) if v.get("leafHash") else b""})
            yield name, not v["wantErr"], "verified, but must fail" if v["wantErr"] else ""
        except (ProtocolError, ValueError) as exc:
            yield name, v["wantErr"], "" if v["wantErr"] else str(exc)


FAMILIES: list[tuple[str, Callable[[], Iterator[Row]], Path]] = [
    ("entry vectors (spec/vectors)", entry_vectors, VECTORS),
    ("C2SP tlog-policy vectors (spec/vectors)", policy_vectors, VECTORS),
    ("C2SP tlog-proof vectors (spec/vectors)", proof_vectors, VECTORS),
    ("C2SP tlog-proofs of RFC 6962 inclusion vectors", proofs_over_shared_inclusion_vectors, CONFORMANCE / "merkle"),
    ("C2SP signed notes", note_vectors, CONFORMANCE / "note"),
    ("RFC 6962 roots", merkle_roots, CONFORMANCE / "merkle"),
    ("RFC 6962 / 9162 proofs", merkle_proofs, CONFORMANCE / "merkle"),
    ("PDQ reference hashes", pdq_reference, CONFORMANCE / "pdq"),
    ("video MD5", video_md5, CONFORMANCE / "video"),
]


def run_all() -> list[FamilyResult]:
    results = []
    for name, family, needs in FAMILIES:
        if not needs.exists():
            results.append(FamilyResult(name, 0, [], skipped=f"{needs} not found"))
            continue
        passed, failed = 0, []
        try:
            for row_name, ok, detail in family():
                if ok:
                    passed += 1
                else:
                    failed.append((row_name, detail))
        except Exception as exc:  # a broken family is reported, the others still run
            failed.append(("(family aborted)", f"{type(exc).__name__}: {exc}"))
        results.append(FamilyResult(name, passed, failed))
    return results
