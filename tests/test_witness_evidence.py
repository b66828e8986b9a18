"""Split-view evidence files (build and verify), the k-of-n cosignature rule, and the
`ncii-node witness` CLI on a real data directory."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from node.cli import main as cli_main
from node.store import open_db
from node.store import witness as store
from node.witness.evidence import EvidenceError, check_pair, dumps, verify_evidence
from node.witness.policy import NotEnoughCosignatures, require_cosignatures
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.cosignature import CosignatureSigner
from protocol.errors import CosignatureError
from protocol.merkle import leaf_hash, root_of
from protocol.note import Signer, add_signatures, parse_note, sign_note
from protocol.policy import Policy

from publish_support import make_datadir

ORIGIN = "evidence.example/log"
SIGNER = Signer.generate(ORIGIN)


def leaves(prefix: bytes, n: int) -> list[bytes]:
    return [leaf_hash(prefix + b"%d" % i) for i in range(n)]


def note(hashes: list[bytes], signer: Signer = SIGNER) -> bytes:
    return sign_checkpoint(Checkpoint(signer.name, len(hashes), root_of(hashes)), signer)


def getter(hashes: list[bytes]):
    return lambda level, index: root_of(hashes[index << level:(index + 1) << level])


@settings(max_examples=40, deadline=None)
@given(n1=st.integers(1, 140), extra=st.integers(0, 140), fork_at=st.integers(0, 139))
def test_inconsistent_pairs_give_valid_evidence_and_consistent_ones_none(n1, extra, fork_at):
    n2 = n1 + extra
    honest = leaves(b"a", n2)
    forked = honest[:min(fork_at, n1 - 1)] + leaves(b"b", n2)[min(fork_at, n1 - 1):]
    small, large = note(honest[:n1]), note(forked)
    # Consistent: the honest prefix and the honest tree.
    assert check_pair(SIGNER.verifier_key(), small, note(honest), getter(honest)) is None
    # Inconsistent: the honest prefix and the forked tree (either order).
    doc = check_pair(SIGNER.verifier_key(), large, small, getter(forked), ["x"])
    assert doc is not None
    verified = verify_evidence(dumps(doc))
    assert verified.kind == ("same-size" if n1 == n2 else "consistency")
    assert (verified.smaller.size, verified.larger.size) == (n1, n2)


def test_power_of_two_old_size():
    honest, forked = leaves(b"a", 100), leaves(b"b", 100)
    doc = check_pair(SIGNER.verifier_key(), note(honest[:64]), note(forked), getter(forked))
    assert verify_evidence(json.dumps(doc)).kind == "consistency"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(type="other"), "type"),
    (lambda d: d.update(vkey=Signer.generate(ORIGIN).verifier_key()), "not validly signed"),
    (lambda d: d.update(origin="x.example/log"), "not validly signed"),
    (lambda d: d["checkpoints"].pop(), "exactly two"),
    (lambda d: d["checkpoints"].__setitem__(1, d["checkpoints"][0]), "agree"),
    (lambda d: d["proof"].update(kind="consistency"), "same-size"),
    (lambda d: d["checkpoints"].__setitem__(0, d["checkpoints"][0].replace("\n30\n", "\n31\n")), "not validly signed"),
])
def test_bad_same_size_evidence_is_refused(mutate, message):
    doc = check_pair(SIGNER.verifier_key(), note(leaves(b"a", 30)), note(leaves(b"b", 30)), None)
    verify_evidence(dumps(doc))
    mutate(doc)
    with pytest.raises(EvidenceError, match=message):
        verify_evidence(dumps(doc))


def test_bad_consistency_evidence_is_refused():
    honest, forked = leaves(b"a", 90), leaves(b"b", 90)
    good = check_pair(SIGNER.verifier_key(), note(honest[:50]), note(forked), getter(forked))
    for field, value in (("old_root_in_new_tree", good["proof"]["hashes"][0]),
                         ("hashes", good["proof"]["hashes"][:-1]),
                         ("old_size", 49)):
        doc = json.loads(dumps(good))
        doc["proof"][field] = value
        with pytest.raises(EvidenceError):
            verify_evidence(dumps(doc))
    # A proof that binds the honest prefix: the checkpoints are consistent.
    doc = check_pair(SIGNER.verifier_key(), note(honest[:50]), note(forked), getter(forked))
    doc["checkpoints"][1] = note(honest).decode()
    with pytest.raises(EvidenceError):
        verify_evidence(dumps(doc))
    with pytest.raises(EvidenceError):
        verify_evidence(b"\xff not json")
    with pytest.raises(EvidenceError):
        verify_evidence(b"[]")


def test_k_of_n_cosignatures():
    cp_note = note(leaves(b"a", 5))
    text = cp_note.split(b"\n\n")[0].decode() + "\n"
    w = [CosignatureSigner.generate(f"w{i}.example") for i in range(3)]
    vkeys = [s.verifier_key() for s in w]
    two = add_signatures(cp_note, [w[0].cosign(text, 1), w[1].cosign(text, 2)])
    assert set(require_cosignatures(two, vkeys, 2)) == set(vkeys[:2])
    with pytest.raises(NotEnoughCosignatures):
        require_cosignatures(two, vkeys, 3)
    with pytest.raises(NotEnoughCosignatures):
        require_cosignatures(two, vkeys[2:], 1)
    # The same witness twice counts once; a cosignature for another checkpoint fails.
    assert len(require_cosignatures(two, vkeys + vkeys, 2)) == 2
    other_text = note(leaves(b"a", 6)).split(b"\n\n")[0].decode() + "\n"
    forged = add_signatures(cp_note, [w[0].cosign(other_text, 1)])
    with pytest.raises(CosignatureError):
        require_cosignatures(forged, vkeys, 1)
    assert require_cosignatures(cp_note, vkeys, 0) == {}


def test_witness_cli(tmp_path, capsys):
    datadir = make_datadir(tmp_path)
    d = str(datadir.root)
    capsys.readouterr()
    assert cli_main(["witness", "key", "--dir", d]) == 0
    cosigner = capsys.readouterr().out.strip()
    assert cli_main(["witness", "key", "--dir", d]) == 0
    assert capsys.readouterr().out.strip() == cosigner          # created once
    assert (datadir.root / "keys" / "witness.key").stat().st_mode & 0o077 == 0
    assert cli_main(["witness", "logs", "add", "--dir", d, ORIGIN, SIGNER.verifier_key()]) == 0
    # C2SP: the key name SHOULD match the origin; a log we did not write may differ,
    # and its origin may hold spaces.
    assert cli_main(["witness", "logs", "add", "--dir", d, "other.example", SIGNER.verifier_key()]) == 0
    assert cli_main(["witness", "logs", "add", "--dir", d, "t.example/log 2", SIGNER.verifier_key()]) == 0
    assert cli_main(["witness", "logs", "add", "--dir", d, "bad\norigin", SIGNER.verifier_key()]) == 1
    assert cli_main(["witness", "logs", "add", "--dir", d, ORIGIN, cosigner]) == 1  # a cosigner key is no log key
    capsys.readouterr()
    assert cli_main(["witness", "logs", "list", "--dir", d]) == 0
    assert ORIGIN in capsys.readouterr().out
    assert cli_main(["witness", "use", "--dir", d, cosigner, "http://127.0.0.1:9/", "--name", "w"]) == 0
    assert cli_main(["witness", "use", "--dir", d, SIGNER.verifier_key(), "http://127.0.0.1:9/"]) == 1
    assert cli_main(["witness", "policy", "--dir", d, "1"]) == 0
    assert cli_main(["witness", "status", "--dir", d]) == 0
    assert "policy: 1 of 1" in capsys.readouterr().out
    assert cli_main(["witness", "require", "--dir", d, ORIGIN, "-k", "2", "--witness", cosigner]) == 1
    assert cli_main(["witness", "require", "--dir", d, ORIGIN, "-k", "1", "--witness", cosigner]) == 0
    db = open_db(datadir.db_path)
    assert store.get_follow_policy(db, ORIGIN) == Policy.k_of_n([cosigner], 1).to_bytes()
    assert [w.url for w in store.list_log_witnesses(db)] == ["http://127.0.0.1:9"]
    db.close()
    assert cli_main(["witness", "require", "--dir", d, ORIGIN, "--off"]) == 0
    assert cli_main(["witness", "unuse", "--dir", d, "w"]) == 0
    assert cli_main(["witness", "logs", "remove", "--dir", d, ORIGIN]) == 0
    assert cli_main(["witness", "logs", "remove", "--dir", d, ORIGIN]) == 1


def test_evidence_about_a_key_not_named_like_its_origin():
    """C2SP lets a log name its key otherwise: evidence is about what the key signed."""
    odd = Signer.generate("t.example/key2")

    def odd_note(hashes):
        return sign_note(Checkpoint("t.example/log2", len(hashes), root_of(hashes)).to_text(), [odd])

    a, b = leaves(b"a", 30), leaves(b"b", 30)
    doc = check_pair(odd.verifier_key(), odd_note(a), odd_note(b), None)
    verified = verify_evidence(dumps(doc))
    assert (verified.origin, verified.kind) == ("t.example/log2", "same-size")
    doc["origin"] = "t.example/key2"     # the notes are not for the origin the file names
    with pytest.raises(EvidenceError, match="not validly signed"):
        verify_evidence(dumps(doc))


def test_rotation_keeps_a_log_naming_of_its_own():
    from node.follow.apply import _check_rotation
    from protocol.entries import Announcement, rotation_message

    current = Signer.generate("t.example/key2")
    for new_name, honoured in (("t.example/key2", True), ("t.example/log2", True), ("elsewhere.example", False)):
        new = Signer.generate(new_name).verifier_key()
        announcement = Announcement("Log", "https://t.example/c", "https://t.example/p", new,
                                    current.sign(rotation_message(new)))
        assert _check_rotation("t.example/log2", current.verifier_key(), announcement)[0] is honoured


def test_migration_2_turns_flags_into_policies_and_drops_unverified_lines(tmp_path):
    """A version-1 witness area (k-of-n rows, notes kept whole) upgraded in place."""
    import types

    from node.store import connect, migrate
    from protocol.policy import parse_policy

    path = tmp_path / "old.db"
    db = connect(path)
    migrate(db, [types.SimpleNamespace(AREA="witness", MIGRATIONS=[store._v1])])
    witness = CosignatureSigner.generate("w.example")
    stranger = Signer.generate("stranger.example")
    cp = Checkpoint(ORIGIN, 3, root_of(leaves(b"m", 3)))
    kept_whole = add_signatures(sign_note(cp.to_text(), [SIGNER, stranger]), [witness.cosign(cp.to_text(), 1700000000)])
    with db.atomic():
        db.execute("INSERT INTO witness_known_logs (origin, vkey, name, added_at) VALUES (?, ?, '', 0)",
                   (ORIGIN, SIGNER.verifier_key()))
        db.execute("INSERT INTO witness_latest (origin, size, root_hash, note, cosigned_at) VALUES (?, 3, ?, ?, 0)",
                   (ORIGIN, cp.root_hash, kept_whole))
        db.execute("INSERT INTO follow_witness_policy (origin, witnesses, k) VALUES (?, ?, 1)",
                   (ORIGIN, json.dumps([witness.verifier_key()])))
    db.close()
    db = open_db(path)                        # runs migration 2
    policy = parse_policy(store.get_follow_policy(db, ORIGIN))
    assert policy.describe() == "witness w.example" and policy.witnesses[0].verifier.vkey == witness.verifier_key()
    note_after = store.witness_latest(db, ORIGIN).note
    assert [s.name for s in parse_note(note_after).signatures] == [ORIGIN, "w.example"]
    assert store.list_follow_policies(db)[0][2] == "flags"
    db.close()
