"""A full disk: appends are refused with a clear error, nothing half-written is ever
published or served, and once there is room again the log goes on from where it was,
every acknowledged entry at its index. The node's directory lives on a real, tiny
filesystem (tmpfs) so the failures are the kernel's own ENOSPC, not a simulation."""

from __future__ import annotations

import asyncio
import json
import subprocess

import aiohttp
import pytest

from node.datadir import DataDir
from protocol.entries import entry_and_bytes_from_json
from protocol.merkle import consistency_proof, verify_consistency
from protocol.tiles import TileNodes
from publish_support import append, make_datadir, pdq_line, read_log


def _mount(args: list[str]) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        _mount(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(disk)])
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {exc}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


@pytest.mark.parametrize("on_small_disk", ["everything", "tiles"])
async def test_full_disk_refuses_clearly_then_recovers(small_disk, tmp_path, on_small_disk, start_node):
    if on_small_disk == "everything":  # the database fills up first
        datadir = make_datadir(small_disk)
    else:  # the database has room, the tiles do not: stored entries wait to be published
        datadir = make_datadir(tmp_path)
        config = datadir.config
        config.paths.tiles = str(small_disk / "tiles")
        datadir.save_config(config)
        datadir = DataDir(datadir.root)
    vkey = datadir.load_log_signer().verifier_key()
    token = datadir.admin_token()
    acknowledged: dict[int, str] = {}
    node = await start_node(datadir)
    try:
        async with aiohttp.ClientSession() as session:
            # Fill the disk: 2 MiB holds a few thousand entries with their tiles (a new data
            # directory takes about 1 MiB: its database and the WAL its migrations wrote).
            error = None
            for chunk in range(200):
                lines = [pdq_line(chunk * 500 + i) for i in range(500)]
                status, answer = await append(session, node.admin_url, token, lines)
                if status != 200:
                    error = (status, answer)
                    break
                for line, result in zip(lines, answer):
                    acknowledged[result["index"]] = line
            assert error is not None, "the disk never filled up"
            status, answer = error
            answer_when_full = answer
            assert status == 503, answer
            print("full disk:", len(acknowledged), "entries acknowledged;", answer["error"])
            assert "full" in answer["error"] or "No space left" in answer["error"], answer
            assert acknowledged, "nothing fitted at all"

            # What is served is whole and verifies: no partial tile, no checkpoint ahead of its tiles.
            full = await read_log(session, node.public_url, vkey)
            assert full.checkpoint.size >= len(acknowledged)
            for index, line in acknowledged.items():  # every acknowledged entry at its index
                assert full.entries[index] == entry_and_bytes_from_json(json.loads(line))[1]

            # Room again: the node publishes what it stored, then takes new entries.
            _mount(["-o", "remount,size=64m", str(small_disk)])
            for _ in range(100):
                status, answer = await append(session, node.admin_url, token, [pdq_line(10**9)])
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200, answer
            after = await read_log(session, node.public_url, vkey)
            assert after.entries[: full.checkpoint.size] == full.entries
            if "stored_from" in answer_when_full:  # stored before the tiles failed: published now, in order
                first = answer_when_full["stored_from"]
                assert [after.entries[first + i] for i in range(len(lines))] == [
                    entry_and_bytes_from_json(json.loads(line))[1] for line in lines]
            proof = consistency_proof(full.checkpoint.size, after.checkpoint.size,
                                      TileNodes(after.checkpoint.size, after.tiles))
            verify_consistency(full.checkpoint.size, after.checkpoint.size, proof,
                               full.checkpoint.root_hash, after.checkpoint.root_hash)
    finally:
        await node.stop()
