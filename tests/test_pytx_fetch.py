"""node.interop.pytx's exchange against logs served over real HTTP on 127.0.0.1
(tests/follow_support.py: a genuine tlog-tiles log that can be told to misbehave).

What a python-threatexchange consumer receives: one FetchDelta per verified round,
submissions keyed by (origin, index) with labels and quality, withdrawals as None,
in log order; nothing at all when the round does not verify; key rotations followed;
the records turned into python-threatexchange signals (pdq, video_md5, vpdq)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

pytest.importorskip("threatexchange", reason="the test extra installs threatexchange (python-threatexchange)")

from threatexchange.exchanges.fetch_state import SignalOpinion, SignalOpinionCategory  # noqa: E402
from threatexchange.signal_type.md5 import VideoMD5Signal  # noqa: E402
from threatexchange.signal_type.pdq.signal import PdqSignal  # noqa: E402

from follow_support import LogServer, StaticLog, pdq_entry, withdrawal_entry  # noqa: E402
from node.interop.pytx import (  # noqa: E402
    NCIINodeCheckpoint,
    NCIINodeCollabConfig,
    NCIINodeSignalExchangeAPI,
    FeedbackFailed,
    FeedbackUnavailable,
    FetchFailed,
    verdict_for,
)
from protocol.entries import Announcement, Feedback, Submission, encode_entry, rotation_message  # noqa: E402
from protocol.note import Signer  # noqa: E402

SIGNALS = [PdqSignal, VideoMD5Signal]


@pytest.fixture
async def served(tmp_path):
    log = StaticLog("helpline.pytx.example/log")
    server = await LogServer(log).start()
    key = tmp_path / "request.key"
    key.write_bytes(Signer.generate("platform.pytx.example/log").to_key_file())
    collab = NCIINodeCollabConfig(url=server.url, vkey=log.vkey, request_key_file=str(key), name="helpline",
                                  api="ncii_node", evidence_dir=str(tmp_path / "evidence"), timeout=2.0)
    yield log, server, NCIINodeSignalExchangeAPI.for_collab(collab)
    await server.stop()


async def fetch(api, checkpoint=None, signal_types=SIGNALS) -> list:
    """fetch_iter, run off the event loop that serves the log (it blocks while it reads)."""
    return await asyncio.to_thread(lambda: list(api.fetch_iter(signal_types, checkpoint)))


def md5_entry(i: int) -> bytes:
    return encode_entry(Submission("md5", i.to_bytes(16, "big"), None, ("video",), 0))


async def test_one_delta_per_round_in_log_order_with_withdrawals_as_none(served):
    log, server, api = served
    origin = log.origin
    labelled = encode_entry(Submission("pdq", (77).to_bytes(32, "big"), 88, ("nude", "image"), 20000))
    log.append(labelled, pdq_entry(1), md5_entry(2), withdrawal_entry(1),
               encode_entry(Feedback("platform.example/log", 0, bytes(32), "removed")),
               encode_entry(Announcement("Helpline", "https://h.example/c", "https://h.example/p")))
    (delta,) = await fetch(api)
    assert list(delta.updates) == [(origin, "0"), (origin, "1"), (origin, "2")]
    first = delta.updates[(origin, "0")]
    assert (first.origin, first.index, first.signal, first.quality, first.labels, first.day) == \
        (origin, 0, "pdq", 88, ("nude", "image"), "2024-10-04")
    assert first.fingerprint == (77).to_bytes(32, "big").hex()
    assert delta.updates[(origin, "1")] is None  # submitted and withdrawn in the same round
    assert delta.updates[(origin, "2")].signal == "md5"
    cp = delta.checkpoint
    assert (cp.origin, cp.size, cp.vkey, cp.pinned_vkey) == (origin, 6, log.vkey, log.vkey)
    assert bytes.fromhex(cp.root_hash) and cp.checkpoint_note.encode() == log.note

    # Nothing new: nothing yielded. Then a later round withdraws an entry of an earlier one.
    assert await fetch(api, cp) == []
    log.append(pdq_entry(3), withdrawal_entry(0, 7))  # 7 is not earlier than the withdrawal: ignored
    (delta2,) = await fetch(api, cp)
    assert delta2.updates == {(origin, "6"): delta2.updates[(origin, "6")], (origin, "0"): None}
    assert delta2.checkpoint.size == 8

    # What a consumer stores, merged, becomes python-threatexchange signals.
    state = dict(delta.updates)
    NCIINodeSignalExchangeAPI.naive_fetch_merge(state, delta2.updates)
    signals = NCIINodeSignalExchangeAPI.naive_convert_to_signal_type(SIGNALS, api.collab, state)
    assert set(signals[PdqSignal]) == {(3).to_bytes(32, "big").hex()}
    assert set(signals[VideoMD5Signal]) == {(2).to_bytes(16, "big").hex()}
    meta = signals[PdqSignal][(3).to_bytes(32, "big").hex()]
    assert f"{origin}#6" in str(meta) and meta.get_as_aggregate_opinion().category.name == "INVESTIGATION_SEED"


async def test_same_fingerprint_in_two_entries_is_one_signal_naming_both(served):
    log, _server, api = served
    log.append(pdq_entry(5, ("image",)), pdq_entry(5))
    (delta,) = await fetch(api)
    signals = api.naive_convert_to_signal_type([PdqSignal], api.collab, delta.updates)
    (meta,) = signals[PdqSignal].values()
    assert (meta.index, meta.same_fingerprint) == (0, (f"{log.origin}#1",))
    assert delta.updates[(log.origin, "0")].same_fingerprint == ()  # the stored record is unchanged


async def test_vpdq_is_kept_with_a_note_when_pytx_has_no_vpdq_type(served, caplog):
    log, _server, api = served
    frames = b"".join(bytes([i]) * 32 + bytes([90]) + (i * 1000).to_bytes(4, "big") for i in range(1, 4))
    vpdq = (3).to_bytes(2, "big") + frames
    log.append(encode_entry(Submission("vpdq", vpdq, None, ("video",), 0)), pdq_entry(9))
    (delta,) = await fetch(api)
    assert "1 vPDQ submission(s) kept but not matched" in caplog.text  # (on stderr where logging is off: the CLI test)
    assert delta.updates[(log.origin, "0")].signal == "vpdq"  # kept: indexed once the vpdq type is installed
    assert PdqSignal in api.naive_convert_to_signal_type(SIGNALS, api.collab, delta.updates)


async def test_key_rotation_is_followed_and_kept_in_the_checkpoint(served):
    log, _server, api = served
    log.append(pdq_entry(1))
    (delta,) = await fetch(api)
    old, new = log.signer, Signer.generate(log.origin)
    log.append(encode_entry(Announcement("Helpline", "https://h.example/c", "https://h.example/p",
                                         new.verifier_key(), log.signer.sign(rotation_message(new.verifier_key())))))
    (delta2,) = await fetch(api, delta.checkpoint)
    assert (delta2.checkpoint.vkey, delta2.checkpoint.pinned_vkey) == (new.verifier_key(), log.vkey)
    log.signer = new  # from now on checkpoints are signed by the new key
    log.append(pdq_entry(2))
    (delta3,) = await fetch(api, delta2.checkpoint)
    assert delta3.checkpoint.size == 3 and (log.origin, "2") in delta3.updates
    # The old key no longer signs for this log.
    log.append(pdq_entry(3))
    log.note = log.sign(4, log.node_at(2, 0), signer=old)
    with pytest.raises(FetchFailed, match="checkpoint rejected"):
        await fetch(api, delta3.checkpoint)


async def test_checkpoint_problems_fail_the_fetch_and_yield_nothing(served):
    log, _server, api = served
    log.append(pdq_entry(1))
    (delta,) = await fetch(api)
    other = Signer.generate(log.origin)
    changed = NCIINodeSignalExchangeAPI.for_collab(dataclasses.replace(api.collab, vkey=other.verifier_key()))
    with pytest.raises(FetchFailed, match="vkey or origin changed"):
        await fetch(changed, delta.checkpoint)
    damaged = dataclasses.replace(delta.checkpoint, root_hash="zz")
    with pytest.raises(FetchFailed, match="damaged"):
        await fetch(api, damaged)
    # The log's checkpoint signed by another key: refused.
    log.append(pdq_entry(2))
    log.note = log.sign(2, bytes(32), signer=other)
    with pytest.raises(FetchFailed, match="checkpoint rejected"):
        await fetch(api, delta.checkpoint)
    assert isinstance(delta.checkpoint, NCIINodeCheckpoint) and delta.checkpoint.size == 1


@pytest.mark.parametrize("category, tags, verdict", [
    (SignalOpinionCategory.NEGATIVE_CLASS, set(), "disputed-false-match"),
    (SignalOpinionCategory.NEGATIVE_CLASS, {"not-violating"}, "not-violating"),
    (SignalOpinionCategory.POSITIVE_CLASS, set(), "removed"),
    (SignalOpinionCategory.POSITIVE_CLASS, {"nude", "Pending-Review"}, "matched-pending-review"),
    (SignalOpinionCategory.INVESTIGATION_SEED, set(), "matched-pending-review"),
])
def test_opinion_to_verdict(category, tags, verdict):
    assert verdict_for(SignalOpinion(True, category, tags)) == verdict


@pytest.mark.parametrize("category, tags", [
    (SignalOpinionCategory.NEGATIVE_CLASS, {"pending-review"}),
    (SignalOpinionCategory.POSITIVE_CLASS, {"not-violating"}),
])
def test_contradictory_opinions_are_refused(category, tags):
    with pytest.raises(FeedbackFailed, match="cannot be"):
        verdict_for(SignalOpinion(True, category, tags))


def test_feedback_without_a_node_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("NCII_NODE_ADMIN_URL", raising=False)
    monkeypatch.delenv("NCII_NODE_ADMIN_TOKEN", raising=False)
    log = StaticLog("helpline.pytx.example/log")
    api = NCIINodeSignalExchangeAPI.for_collab(NCIINodeCollabConfig(
        url="http://127.0.0.1:9", vkey=log.vkey, request_key_file=str(tmp_path / "none"), name="x", api="ncii_node"))
    opinion = SignalOpinion(True, SignalOpinionCategory.POSITIVE_CLASS, set())
    with pytest.raises(FeedbackUnavailable, match="feedback is not available for x") as refused:
        api.report_opinion(PdqSignal, "f" * 64, opinion)
    assert isinstance(refused.value, NotImplementedError)
    from threatexchange.signal_type.raw_text import RawTextSignal

    with pytest.raises(NotImplementedError, match="no feedback for raw_text"):
        api.report_opinion(RawTextSignal, "hello", opinion)


async def test_vpdq_becomes_pytx_vpdq_signals_that_its_own_index_matches(served, monkeypatch, caplog):
    """With threatexchange's vpdq extension, a vPDQ submission is a `vpdq` signal that
    its own VPDQSignal accepts and its own index matches. The extension's Python code
    runs for real; only its C binding `vpdq` (which hashes video files, and needs
    FFmpeg's development libraries to build) is absent here; if so, a module holding
    only the name the extension's type annotations read stands in for it: nothing of
    it is called when signals are converted, indexed or matched."""
    import sys
    import types

    try:
        import vpdq  # noqa: F401
    except ImportError:
        binding = types.ModuleType("vpdq")
        binding.VpdqFeature = type("VpdqFeature", (), {})
        monkeypatch.setitem(sys.modules, "vpdq", binding)
    from threatexchange.extensions.vpdq.vpdq import VPDQSignal

    log, _server, api = served
    frames = b"".join(bytes([i]) * 16 + bytes([255 - i]) * 16 + bytes([90]) + (i * 1000).to_bytes(4, "big")
                      for i in range(1, 6))
    log.append(encode_entry(Submission("vpdq", (5).to_bytes(2, "big") + frames, None, ("video",), 0)))
    (delta,) = await fetch(api, signal_types=[*SIGNALS, VPDQSignal])
    assert "vPDQ submission(s) kept but not matched" not in caplog.text
    (signal_str,) = api.naive_convert_to_signal_type([VPDQSignal], api.collab, delta.updates)[VPDQSignal]
    assert VPDQSignal.validate_signal_str(signal_str) == signal_str
    index = VPDQSignal.get_index_cls().build(
        api.naive_convert_to_signal_type([VPDQSignal], api.collab, delta.updates)[VPDQSignal].items())
    (match,) = index.query(signal_str)
    assert f"{log.origin}#0" in str(match.metadata)
    assert VPDQSignal.compare_hash(signal_str, signal_str).match


async def test_a_log_whose_key_is_not_named_like_its_origin(tmp_path):
    """C2SP lets a log's key have another name (SHOULD); the collaboration's `origin`
    says which origin line to expect, as `ncii-node follow add --origin` does."""
    from protocol.checkpoint import Checkpoint
    from protocol.note import sign_note

    class ForeignKeyLog(StaticLog):
        def sign(self, size, root, signer=None):  # sign_checkpoint insists on our own convention
            return sign_note(Checkpoint(self.origin, size, root).to_text(), [signer or self.signer])

    log = ForeignKeyLog("helpline.pytx.example/log")
    log.signer = Signer.generate("helpline-key-2026")
    log.append(pdq_entry(1))
    server = await LogServer(log).start()
    key = tmp_path / "request.key"
    key.write_bytes(Signer.generate("platform.pytx.example").to_key_file())
    try:
        collab = NCIINodeCollabConfig(url=server.url, vkey=log.vkey, request_key_file=str(key), name="h",
                                      api="ncii_node", evidence_dir=str(tmp_path / "evidence"), timeout=2.0)
        with pytest.raises(FetchFailed, match="checkpoint rejected"):  # expects the origin helpline-key-2026
            await fetch(NCIINodeSignalExchangeAPI.for_collab(collab))
        named = NCIINodeSignalExchangeAPI.for_collab(dataclasses.replace(collab, origin=log.origin))
        (delta,) = await fetch(named)
        assert list(delta.updates) == [(log.origin, "0")] and delta.checkpoint.origin == log.origin
    finally:
        await server.stop()


def test_reader_key_command(tmp_path, capsys):
    """`ncii-node reader-key`: a new request key (0600, never overwritten), its public
    half printed for `ncii-node readers add`, and printed again from the file."""
    from node.cli import main as cli_main
    from node.readaccess import load_request_signer, parse_request_vkey

    path = tmp_path / "keys" / "reader.key"
    assert cli_main(["reader-key", str(path), "--name", "platform.example"]) == 0
    vkey = capsys.readouterr().out.strip()
    parse_request_vkey(vkey)
    assert vkey.startswith("platform.example+") and path.stat().st_mode & 0o777 == 0o600
    assert load_request_signer(path).keyid == vkey
    assert cli_main(["reader-key", str(path)]) == 0 and capsys.readouterr().out.strip() == vkey
    before = path.read_bytes()
    assert cli_main(["reader-key", str(path), "--name", "other.example"]) == 1
    assert "never overwritten" in capsys.readouterr().err and path.read_bytes() == before
    assert cli_main(["reader-key", str(tmp_path / "k2"), "--name", "has space"]) == 2
    assert cli_main(["reader-key", str(tmp_path / "missing")]) == 1
    assert "cannot read the request key" in capsys.readouterr().err
