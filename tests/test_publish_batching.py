"""When the sequencer publishes (node/log/sequencer.py): an append to an idle log at
once, whatever the interval; appends that arrive while the previous batch is recent
wait and share one checkpoint (group commit); every change of the served note is
announced to `on_change` hooks (the push channel)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from node.log.sequencer import Sequencer
from protocol.entries import Submission, encode_entry
from publish_support import make_datadir


def entry(i: int) -> bytes:
    return encode_entry(Submission("pdq", (i + 1).to_bytes(32, "big"), 90, (), 0))


async def test_idle_log_publishes_at_once_and_batches_under_load(tmp_path):
    sequencer = Sequencer(make_datadir(tmp_path, interval=30.0))
    await sequencer.start()
    changes = []
    sequencer.on_change.append(changes.append)
    try:
        started = time.monotonic()
        [first] = await sequencer.append([entry(0)])
        # Not after the 30 s interval: an idle log publishes the append at once.
        assert first.checkpoint_size == 1 and time.monotonic() - started < 15
        assert [c.size for c in changes] == [1]
    finally:
        await sequencer.stop()

    sequencer = Sequencer(make_datadir(tmp_path, name="busy", interval=1.0))
    await sequencer.start()
    try:
        await sequencer.append([entry(0)])
        # Three appends within the interval after that batch: they wait and share a checkpoint.
        acks = await asyncio.gather(*(sequencer.append([entry(i), entry(i + 100)]) for i in range(1, 4)))
        assert {a.checkpoint_size for ack in acks for a in ack} == {7}
        assert sorted(a.index for ack in acks for a in ack) == list(range(1, 7))
    finally:
        await sequencer.stop()


async def test_on_change_hears_cosignatures_and_a_bad_hook_is_only_logged(tmp_path, caplog):
    sequencer = Sequencer(make_datadir(tmp_path, interval=0.0))
    await sequencer.start()
    heard = []

    def broken(_published):
        raise RuntimeError("hook bug")

    sequencer.on_change.extend([broken, heard.append])
    try:
        with caplog.at_level(logging.ERROR):
            await sequencer.append([entry(0)])
            published = sequencer.published
            sequencer.published = dataclasses.replace(published, note=published.note + b"\xe2\x80\x94 w x\n")
            sequencer.published = sequencer.published  # the same value: no news
        assert [p.note for p in heard] == [published.note, published.note + b"\xe2\x80\x94 w x\n"]
        assert "on_change callback failed" in caplog.text
    finally:
        await sequencer.stop()
