"""Acknowledgements (protocol/acknowledgements.py): C2SP cosignatures inside entries,
lifted onto checkpoints, and the timelines that say when an entry was covered."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.acknowledgements import (
    Latency,
    Timeline,
    ack_time,
    ack_vkey,
    acknowledge,
    acknowledged_checkpoint,
    cosignature_line,
    is_valid_acknowledgement,
    latencies,
    publication_line,
    publication_of,
    percentile,
    signed_message,
    summarize,
    verify_acknowledgement,
    verify_publication,
)
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.cosignature import CosignatureSigner, CosignatureVerifier
from protocol.entries import decode_entry, encode_entry
from protocol.errors import CosignatureError, UsageError
from protocol.merkle import leaf_hash, root_of
from protocol.note import Signer, add_signatures, parse_note
from protocol.policy import Policy, check_quorum, parse_policy
from protocol.tlogproof import build_proofs, verify_proofs

HELPLINE = "helpline.example/log"
PLATFORM = "platform.example/log"
LOG_KEY = Signer(HELPLINE, bytes(range(32)))
ACK_KEY = CosignatureSigner(PLATFORM, bytes(range(64, 96)))
HELPLINE_ACK_KEY = CosignatureSigner(HELPLINE, bytes(range(96, 128)))
CP = Checkpoint(HELPLINE, 10, leaf_hash(b"root"))


def test_acknowledge_round_trip_and_layout():
    ack = acknowledge(ACK_KEY, CP, 1742300000123)
    assert (ack.origin, ack.size, ack.root_hash) == (HELPLINE, 10, CP.root_hash)
    assert (ack.timestamp, ack.milliseconds) == (1742300000, 123)
    assert ack.public_key == ACK_KEY.verifier().public_key
    data = encode_entry(ack)
    assert len(data) == 150 + len(HELPLINE) and data[-1] == 0  # no publication cosignature
    assert data[:2] == b"\x01\x05"
    assert decode_entry(data) == ack
    assert ack_time(ack) == pytest.approx(1742300000.123)
    assert acknowledged_checkpoint(ack) == CP
    assert signed_message(ack) == (b"cosignature/v1\ntime 1742300000\n" + CP.to_text().encode())
    verify_acknowledgement(ack, PLATFORM)


@pytest.mark.parametrize("change", [
    {"size": 11}, {"root_hash": leaf_hash(b"other")}, {"origin": "other.example/log"}, {"timestamp": 1742300001},
    {"public_key": CosignatureSigner(PLATFORM, bytes(32)).verifier().public_key}, {"signature": bytes(64)},
])
def test_any_signed_field_changed_fails(change):
    ack = dataclasses.replace(acknowledge(ACK_KEY, CP, 1742300000123), **change)
    with pytest.raises((CosignatureError, ValueError)):
        verify_acknowledgement(ack, PLATFORM)
    assert not is_valid_acknowledgement(ack, PLATFORM)


def test_milliseconds_are_not_signed_but_bounded():
    """The cosignature (C2SP) has whole seconds; the sub-second part is covered by the
    acknowledger's log only."""
    ack = dataclasses.replace(acknowledge(ACK_KEY, CP, 1742300000123), milliseconds=900)
    verify_acknowledgement(ack, PLATFORM)


def test_refuses_what_it_cannot_carry():
    with pytest.raises(UsageError):
        acknowledge(ACK_KEY, Checkpoint(HELPLINE, 10, CP.root_hash, ("ext",)), 0)
    with pytest.raises(UsageError):
        acknowledge(ACK_KEY, Checkpoint(HELPLINE, 0, CP.root_hash), 0)
    with pytest.raises(UsageError):
        acknowledge(ACK_KEY, CP, -1)


def test_lifted_onto_the_checkpoint_it_is_a_c2sp_cosignature():
    """Put back on the acknowledged checkpoint, the line is checked by the ordinary
    cosignature code and by a C2SP tlog-policy naming the acknowledgement key."""
    ack = acknowledge(ACK_KEY, CP, 1742300000123)
    note = add_signatures(sign_checkpoint(CP, LOG_KEY), [cosignature_line(ack, PLATFORM)])
    vkey = ack_vkey(ack, PLATFORM)
    assert vkey == ACK_KEY.verifier_key()
    assert CosignatureVerifier.from_vkey(vkey).verify_line(CP.to_text(), cosignature_line(ack, PLATFORM)) == 1742300000
    policy = parse_policy(f"log {LOG_KEY.verifier_key()}\nwitness applied {vkey}\nquorum applied\n".encode())
    result = check_quorum(policy, note)
    assert result.met and result.cosigned == {"applied": 1742300000}
    # The same cosignature under another checkpoint does not count.
    other = Checkpoint(HELPLINE, 10, leaf_hash(b"fork"))
    forged = add_signatures(sign_checkpoint(other, LOG_KEY), [cosignature_line(ack, PLATFORM)])
    with pytest.raises(CosignatureError):
        check_quorum(policy, forged)


def test_a_receipt_checkpoint_carries_acknowledgements():
    """A tlog-proof under an acknowledged checkpoint verifies against a policy that
    requires the acknowledgement (what a person's receipt relies on)."""
    entries = {i: bytes([1, 1, 1, 255, 0, 8, 0, 0, 0, 0, 0, 32]) + bytes([i]) * 32 for i in range(10)}
    leaves = [leaf_hash(entries[i]) for i in range(10)]
    cp = Checkpoint(HELPLINE, 10, root_of(leaves))
    ack = acknowledge(ACK_KEY, cp, 1742300000123)
    note = add_signatures(sign_checkpoint(cp, LOG_KEY), [cosignature_line(ack, PLATFORM)])
    proofs = build_proofs(note, {2: entries[2], 7: entries[7]}, leaves)
    policy = Policy.k_of_n([ack_vkey(ack, PLATFORM)], 1, [LOG_KEY.verifier_key()])
    verified = verify_proofs(proofs.to_bytes(), policy)
    assert [e.index for e in verified.entries] == [2, 7]
    assert list(verified.quorum.cosigned.values()) == [1742300000]


def test_publication_cosignature_travels_from_the_checkpoint_to_the_acknowledgement():
    """The helpline cosigns its own checkpoint when it publishes it; the platform
    copies that line into its acknowledgement; anyone with the helpline's
    acknowledgement key checks the publication time, and the line goes back on the
    checkpoint."""
    served = add_signatures(sign_checkpoint(CP, LOG_KEY), [HELPLINE_ACK_KEY.cosign(CP.to_text(), 1742299999)])
    publication = publication_of(parse_note(served))
    assert publication is not None and publication.timestamp == 1742299999
    ack = acknowledge(ACK_KEY, CP, 1742300000123, publication)
    assert decode_entry(encode_entry(ack)) == ack
    assert len(encode_entry(ack)) == 150 + 76 + len(HELPLINE)
    assert verify_publication(ack, HELPLINE_ACK_KEY.verifier_key()) == 1742299999
    with pytest.raises(CosignatureError):
        verify_publication(ack, CosignatureSigner(HELPLINE, bytes(32)).verifier_key())  # another key
    with pytest.raises(CosignatureError):
        verify_publication(dataclasses.replace(ack, size=11), HELPLINE_ACK_KEY.verifier_key())
    with pytest.raises(CosignatureError):
        verify_publication(acknowledge(ACK_KEY, CP, 1742300000123), HELPLINE_ACK_KEY.verifier_key())
    assert add_signatures(sign_checkpoint(CP, LOG_KEY), [publication_line(ack)]) == served
    # A note without one (the log key's own line is not a cosignature): nothing to copy.
    assert publication_of(parse_note(sign_checkpoint(CP, LOG_KEY))) is None
    # Another name (a witness's cosignature) is not the log's publication.
    witnessed = add_signatures(sign_checkpoint(CP, LOG_KEY), [ACK_KEY.cosign(CP.to_text(), 1)])
    assert publication_of(parse_note(witnessed)) is None


def test_committed_vectors_carry_valid_cosignatures():
    vectors = json.loads((Path(__file__).resolve().parents[1] / "spec/vectors/entries.json").read_text())
    acks = [(v["desc"], decode_entry(bytes.fromhex(v["hex"]))) for v in vectors
            if v["json"]["kind"] == "acknowledgement"]
    assert len(acks) == 4
    signed = [a for desc, a in acks if desc.startswith(f"acknowledgement by {PLATFORM}")]
    assert len(signed) == 2
    for ack in signed:
        verify_acknowledgement(ack, PLATFORM)
    assert [verify_publication(a, HELPLINE_ACK_KEY.verifier_key()) for a in signed if a.publication] == [1742299999]
    for desc, ack in acks:
        if ack not in signed:
            assert not is_valid_acknowledgement(ack, "x"), desc


# --- timelines -----------------------------------------------------------------------


def test_timeline_first_point_in_log_order_covers():
    t = Timeline.of([(3, 10.0), (5, 12.0), (9, 11.0)])
    assert [t.covered_at(i) for i in range(10)] == [10.0] * 3 + [12.0] * 2 + [11.0] * 4 + [None]
    assert t.largest == 9
    # A later point of a smaller (or equal) tree covers nothing new: the first one counts.
    t = Timeline.of([(6, 10.0), (3, 8.0), (6, 7.0)])
    assert t.covered_at(0) == 10.0 and t.sizes == (6,)
    assert Timeline.of([]).covered_at(0) is None and Timeline.of([]).largest == 0


def test_latencies_and_summary():
    published = Timeline.of([(2, 100.0), (4, 101.0), (6, 103.0)])
    acked = Timeline.of([(2, 100.5), (4, 103.0)])
    items = latencies(range(6), published, acked)
    assert [x.seconds for x in items] == [0.5, 0.5, 2.0, 2.0, None, None]
    summary = summarize(items, now=110.0)
    assert summary == {"entries": 6, "acknowledged": 4, "pending": 2, "p50": 0.5, "p90": 2.0, "p99": 2.0,
                       "max": 2.0, "pending_since": 103.0, "oldest_pending_seconds": 7.0}
    assert summarize([]) == {"entries": 0, "acknowledged": 0, "pending": 0}


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99 and percentile(values, 1.0) == 100
    assert percentile([7], 0.01) == 7
    with pytest.raises(UsageError):
        percentile([], 0.5)


@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(0, 100, allow_nan=False)), st.integers(1, 5)),
                min_size=0, max_size=30))
@settings(max_examples=80, deadline=None)
def test_grouped_latencies_summarize_like_the_entries_they_stand_for(groups):
    """Entries first published in one checkpoint share both times: a group of n counts
    as n entries, percentiles included."""
    grouped = [Latency(i, 100.0, None if s is None else 100.0 + s, n) for i, (s, n) in enumerate(groups)]
    expanded = [Latency(i, 100.0, None if s is None else 100.0 + s) for i, (s, n) in enumerate(groups)
                for _ in range(n)]
    assert summarize(grouped, now=300.0) == summarize(expanded, now=300.0)
