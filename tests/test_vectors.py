"""The committed entry vectors (spec/vectors/entries*.json) hold both ways, and are
exactly what scripts/gen_vectors.py generates."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from protocol.entries import decode_entry, encode_entry, entry_from_json, entry_to_json
from protocol.errors import EntryError
from protocol.merkle import leaf_hash

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"


def _load(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


VALID = _load("entries.json")
INVALID = _load("entries-invalid.json")


@pytest.mark.parametrize("vector", VALID, ids=[v["desc"] for v in VALID])
def test_valid_vector(vector):
    data = bytes.fromhex(vector["hex"])
    entry = decode_entry(data)
    assert encode_entry(entry) == data
    assert entry_from_json(vector["json"]) == entry
    assert entry_to_json(entry) == vector["json"]
    # The JSON text itself survives a trip through json (no floats that drift, etc.).
    assert entry_from_json(json.loads(json.dumps(vector["json"]))) == entry
    assert leaf_hash(data).hex() == vector["leaf_hash"]
    assert hashlib.sha256(b"\x00" + data).hexdigest() == vector["leaf_hash"]


@pytest.mark.parametrize("vector", INVALID, ids=[v["desc"] for v in INVALID])
def test_invalid_vector(vector):
    with pytest.raises(EntryError) as caught:
        decode_entry(bytes.fromhex(vector["hex"]))
    assert caught.value.offset == vector["error_offset"]
    assert f"(at byte {vector['error_offset']})" in str(caught.value)


def test_every_kind_and_signal_is_covered():
    kinds = {v["json"]["kind"] for v in VALID}
    assert kinds == {"submission", "withdrawal", "feedback", "announcement", "acknowledgement"}
    signals = {v["json"]["signal"] for v in VALID if v["json"]["kind"] == "submission"}
    assert signals == {"pdq", "md5", "vpdq"}
    assert any(v["json"]["kind"] == "announcement" and v["json"]["new_vkey"] for v in VALID)
    assert max(len(v["hex"]) // 2 for v in VALID) > 65000  # a maximum-size entry


def test_committed_files_equal_generated():
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "scripts" / "gen_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.build().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, (
            f"spec/vectors/{name} is stale: run scripts/gen_vectors.py and commit the result"
        )
