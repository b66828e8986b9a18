"""C2SP tlog-policy and tlog-proof in protocol/: the committed vectors (spec/vectors/
tlog-policy.json, tlog-proof.json) are what scripts/gen_proof_vectors.py writes and
all hold (the same checks `ncii-node selftest` runs, including tlog-proofs built from
the shared RFC 6962 inclusion vectors under the shared Go-generated log key), and the
properties behind them: round trips, bounds, the proofs a builder makes verify, and
only the tiles it asks for are needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from node import selftest
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.cosignature import CosignatureSigner
from protocol.errors import CheckpointError, ProofError, UsageError
from protocol.merkle import leaf_hash, root_of
from protocol.note import Signer, add_signatures
from protocol.policy import (
    MAX_LINE_BYTES,
    MAX_POLICY_BYTES,
    MAX_WITNESSES,
    Policy,
    PolicyError,
    QuorumNotMet,
    check_quorum,
    parse_policy,
    verify_checkpoint,
)
from protocol.tiles import TileNodes, build_tile
from protocol.tlogproof import (
    MAX_BYTES,
    ProofFormatError,
    build_proofs,
    bundle_for_entry,
    parse_proofs,
    tiles_for_inclusion,
    verify_proofs,
)

ROOT = Path(__file__).resolve().parents[1]
LOG = Signer("log.example/a", bytes(range(32)))
WITNESSES = [CosignatureSigner(f"w{i}.example", bytes([i]) * 32) for i in range(1, 5)]


def test_committed_vectors_equal_generated():
    spec = importlib.util.spec_from_file_location("gen_proof_vectors", ROOT / "scripts" / "gen_proof_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.render().items():
        assert (ROOT / "spec" / "vectors" / name).read_text(encoding="utf-8") == text, (
            f"spec/vectors/{name} is stale: run scripts/gen_proof_vectors.py and commit the result")


@pytest.mark.parametrize("family", [selftest.policy_vectors, selftest.proof_vectors,
                                    selftest.proofs_over_shared_inclusion_vectors])
def test_vector_family_holds(family):
    rows = list(family())
    assert len(rows) > 20
    assert [(name, detail) for name, ok, detail in rows if not ok] == []


# -- tlog-policy -----------------------------------------------------------------------------

def note_cosigned_by(size: int, *witnesses: CosignatureSigner, origin: str = "log.example/a",
                     signer: Signer = LOG) -> bytes:
    cp = Checkpoint(origin, size, root_of([leaf_hash(b"%d" % i) for i in range(size)]))
    return add_signatures(sign_checkpoint(cp, signer) if signer.name == origin else
                          _sign_foreign(cp, signer), [w.cosign(cp.to_text(), 1700000000) for w in witnesses])


def _sign_foreign(cp: Checkpoint, signer: Signer) -> bytes:
    """A conformant log whose key is not named like its origin (C2SP: SHOULD)."""
    from protocol.note import sign_note

    return sign_note(cp.to_text(), [signer])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_k_of_n_means_k_of_n(data):
    n = data.draw(st.integers(1, 4))
    k = data.draw(st.integers(0, n))
    signers = data.draw(st.lists(st.sampled_from(WITNESSES[:n]), unique=True))
    policy = Policy.k_of_n([w.verifier_key() for w in WITNESSES[:n]], k, [LOG.verifier_key()])
    assert parse_policy(policy.to_bytes()) == policy
    note = note_cosigned_by(3, *signers)
    assert check_quorum(policy, note).met == (len(signers) >= k)
    if len(signers) >= k:
        assert verify_checkpoint(policy, note).checkpoint.size == 3
    else:
        with pytest.raises(QuorumNotMet):
            verify_checkpoint(policy, note)


def test_policy_bounds():
    with pytest.raises(PolicyError, match="at most"):
        parse_policy(b"#" * (MAX_POLICY_BYTES + 1))
    with pytest.raises(PolicyError, match="longer than"):
        parse_policy(b"#" + b"x" * MAX_LINE_BYTES + b"\nquorum none\n")
    many = [CosignatureSigner(f"m{i}.example", i.to_bytes(32, "big")) for i in range(MAX_WITNESSES + 1)]
    text = "".join(f"witness m{i} {w.verifier_key()}\n" for i, w in enumerate(many)) + "quorum none\n"
    with pytest.raises(PolicyError, match=f"more than {MAX_WITNESSES} witnesses"):
        parse_policy(text.encode())
    with pytest.raises(UsageError):
        parse_policy("quorum none\n")  # text, not bytes: our mistake, not the file's


def test_log_known_from_context_may_have_another_name():
    odd = Signer("t.example/key2", bytes(range(1, 33)))
    policy = Policy.k_of_n([WITNESSES[0].verifier_key()], 1)
    note = note_cosigned_by(2, WITNESSES[0], origin="t.example/log2", signer=odd)
    verified = verify_checkpoint(policy, note, origin="t.example/log2", log_keys=[odd.verifier()])
    assert verified.log_key == odd.verifier_key()
    with pytest.raises(CheckpointError):   # another origin than the one the key is trusted for
        verify_checkpoint(policy, note, origin="t.example/key2", log_keys=[odd.verifier()])
    # In a policy file a log's key name is its origin (C2SP tlog-policy: MUST).
    with pytest.raises(CheckpointError):
        verify_checkpoint(Policy.k_of_n([WITNESSES[0].verifier_key()], 1, [odd.verifier_key()]), note)


# -- tlog-proof ------------------------------------------------------------------------------

def tree(n: int):
    entries = [b"entry %d" % i for i in range(n)]
    leaves = [leaf_hash(e) for e in entries]
    return entries, lambda level, index: root_of(leaves[index << level:(index + 1) << level])


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_built_proofs_round_trip_and_verify(data):
    size = data.draw(st.integers(1, 700))
    indices = data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=5, unique=True))
    entries, node_at = tree(size)
    note = _note_for(entries)
    proofs = build_proofs(note, {i: entries[i] for i in indices}, node_at)
    encoded = proofs.to_bytes()
    assert parse_proofs(encoded) == proofs
    policy = Policy.k_of_n([w.verifier_key() for w in WITNESSES[:3]], 2, [LOG.verifier_key()])
    verified = verify_proofs(encoded, policy)
    assert [(e.index, e.entry) for e in verified.entries] == [(i, entries[i]) for i in sorted(indices)]
    for one in proofs.split():           # each piece is a C2SP tlog-proof that verifies alone
        assert one.startswith(b"c2sp.org/tlog-proof@v1\n")
        verify_proofs(one, policy)
    # Only the tiles tiles_for_inclusion names are needed to build the same proofs.
    tiles = {t: build_tile(t.level, t.index, size, node_at) for t in tiles_for_inclusion(indices, size)}
    again = build_proofs(note, {i: entries[i] for i in indices}, TileNodes(size, tiles))
    assert again == proofs
    assert all(bundle_for_entry(i, size).first_entry <= i < bundle_for_entry(i, size).first_entry
               + bundle_for_entry(i, size).width for i in indices)


def _note_for(entries: list[bytes]) -> bytes:
    cp = Checkpoint("log.example/a", len(entries), root_of([leaf_hash(e) for e in entries]))
    return add_signatures(sign_checkpoint(cp, LOG), [w.cosign(cp.to_text(), 1700000000) for w in WITNESSES[:2]])


def test_builder_refuses_tiles_that_do_not_match():
    entries, node_at = tree(20)
    with pytest.raises(ProofError):
        build_proofs(_note_for(entries), {3: b"not entry 3"}, node_at)


def test_proof_without_entry_takes_it_from_the_caller():
    entries, node_at = tree(9)
    proofs = build_proofs(_note_for(entries), {4: entries[4]}, node_at, include_entries=False)
    policy = parse_policy(f"log {LOG.verifier_key()}\nquorum none\n".encode())
    assert verify_proofs(proofs.to_bytes(), policy, entries={4: entries[4]}).entries[0].entry == entries[4]
    with pytest.raises(ProofError):
        verify_proofs(proofs.to_bytes(), policy, entries={4: entries[5]})
    with pytest.raises(ProofFormatError, match="carries no entry"):
        verify_proofs(proofs.to_bytes(), policy)
    full = build_proofs(_note_for(entries), {4: entries[4]}, node_at)
    with pytest.raises(ProofError, match="differs"):
        verify_proofs(full.to_bytes(), policy, entries={4: entries[5]})


def test_proof_size_is_bounded():
    with pytest.raises(ProofFormatError, match="at most"):
        parse_proofs(b"c2sp.org/tlog-proof@v1\n" + b"A" * MAX_BYTES)
