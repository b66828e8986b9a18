"""What the benchmark scripts share: writing a log with the real sequencer, and
running `ncii-node serve` as a separate process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def append_with_sequencer(datadir_root: Path, entries: list[bytes]) -> float:
    """Hand `entries` to the node's own sequencer (the batch writer behind POST
    /admin/append), so tiles, bundles and checkpoints are the real ones. Seconds taken."""
    from node.datadir import DataDir
    from node.web.server import RunningNode

    async def run():
        node = await RunningNode(DataDir(datadir_root)).start("127.0.0.1", 0)
        try:
            await node.node.sequencer.append(entries)
        finally:
            await node.stop()

    started = time.monotonic()
    asyncio.run(run())
    return time.monotonic() - started


@contextlib.contextmanager
def serving(datadir_root: Path, timeout: float = 120.0, profile: str | None = None, source: Path | None = None):
    """`ncii-node serve --dir DIR --port 0` in a separate process; yields its serve.json.
    `profile`: run it under cProfile, whose statistics go to that file when it stops.
    `source`: another checkout to run the node from (a baseline in the same run)."""
    python = [PYTHON] + (["-m", "cProfile", "-o", profile] if profile else [])
    server = subprocess.Popen(python + ["-m", "node", "serve", "--dir", str(datadir_root), "--port", "0"],
                              cwd=source or ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = json.loads((datadir_root / "serve.json").read_text())
                if info.get("pid") == server.pid:
                    break
            except (FileNotFoundError, ValueError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node serving {datadir_root} did not start")
            time.sleep(0.2)
        yield info
    finally:
        server.terminate()
        server.wait(60)
