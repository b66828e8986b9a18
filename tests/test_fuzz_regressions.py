"""Every input that fuzzing (scripts/fuzz, fuzz/harnesses.py) ever found crashing a
parser, replayed through the same harness: each must now end in one of our own error
types, as the harness demands. And every seed of every harness passes, so a harness
that no longer fits its parser fails here, not in the next fuzzing campaign.

A crash is added here twice: the input as the fuzzer found it (a file under
tests/fuzz_crashes/<harness>/, libFuzzer's name) and its essence written out (CRASHES),
with what it did before the fix. Crashes found by reading the code while writing a
harness are in CRASHES too, marked "(review)".
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fuzz.harnesses import HARNESSES
from fuzz.seeds import seeds

FOUND = Path(__file__).resolve().parent / "fuzz_crashes"

# (harness, input, what it did before the fix)
CRASHES: list[tuple[str, bytes, str]] = [
    ("gossip_seen", b'{"checkpoints": [{"origin": "fuzz.example/log", "note": "fuzz.example/log\\udddd"}]}',
     "UnicodeEncodeError in node.witness.seen.notes_for_origin: a peer's /witness/seen note holding a lone "
     "surrogate (JSON \\udddd) ended the gossip round with a traceback"),
    ("evidence", b'{"type": "ncii-node/split-view-evidence/v1", "origin": "fuzz.example/log", '
                 b'"vkey": "fuzz.example/log+18ad62be+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", '
                 b'"checkpoints": ["\\udddd", "\\udddd"], "proof": {"kind": "same-size"}}',
     "(review) UnicodeEncodeError in verify_evidence: an evidence document (from a peer's /witness/evidence "
     "or a file) whose checkpoint holds a lone surrogate"),
    ("evidence", b"[" * 100_000,
     "(review) RecursionError in verify_evidence: JSON nested 100,000 deep"),
    ("ack_evidence", b'{"type": "ncii-node/acknowledgement-evidence/v1", "origin": "fuzz.example/log", '
                     b'"vkey": "fuzz.example/log+18ad62be+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", '
                     b'"checkpoint": "fuzz.example/log\\n5\\n\\udddd", "acknowledger": {"origin": "p.example/log", '
                     b'"vkey": "x", "proof": "x"}, "proof": {"kind": "same-size"}}',
     "UnicodeEncodeError in protocol.ack_evidence.verify_ack_evidence (`ncii-node audit verify-evidence FILE`): "
     "an acknowledgement evidence file whose checkpoint holds a lone surrogate (JSON \\udddd)"),
    ("node_json", b'{"verifier_key": ' + b"[" * 100_000,
     "(review) RecursionError in parse_node_json (`follow add --tofu`): a /node.json nested 100,000 deep"),
]


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.CRITICAL)  # the witness logs each refusal; expected here
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_every_seed_passes_its_harness(name):
    items = seeds(name)
    assert items, f"harness {name} has no seed"
    for data in items:
        HARNESSES[name].run(data)


@pytest.mark.parametrize("name, data, before", CRASHES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CRASHES)])
def test_input_that_crashed_a_parser(name, data, before):
    HARNESSES[name].run(data)


def _found() -> list[Path]:
    return sorted(p for p in FOUND.glob("*/*") if p.is_file())


@pytest.mark.parametrize("path", _found(), ids=lambda p: f"{p.parent.name}/{p.name[:14]}")
def test_crash_file_found_by_fuzzing(path):
    HARNESSES[path.parent.name].run(path.read_bytes())
