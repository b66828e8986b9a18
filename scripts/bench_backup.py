#!/usr/bin/env python3
"""Benchmark: `ncii-node backup` of a 1,000,000-entry log while the node serves, and
`ncii-node restore`.

    .venv/bin/python scripts/bench_backup.py [--entries 1000000] [--work DIR]

1. BUILD (reused when --work holds it): a helpline whose log of random PDQ
   submissions is written by the real sequencer (as scripts/bench_follow.py does).
2. SERVE `ncii-node serve`, and keep appending 100 entries every 0.1 s over
   POST /admin/append while the backup runs.
3. BACKUP with `ncii-node backup DIR OUT` (a separate process): time, size.
   Baseline in the same run: `cp -r` of the data directory (not a consistent copy
   while the node writes; a plain file copy of the same bytes).
4. RESTORE with `ncii-node restore OUT NEW` (checks every file's hash): time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_support import PYTHON, append_with_sequencer, serving  # noqa: E402


def du(path: Path) -> int:
    return sum((Path(d) / f).stat().st_size for d, _, files in os.walk(path) for f in files)


def build(helpline: Path, count: int) -> None:
    from protocol.entries import Submission, encode_entry

    subprocess.run([PYTHON, "-m", "node", "init", "--dir", str(helpline), "--origin", "bench-backup.example/log"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    rng = random.Random(3)
    entries = [encode_entry(Submission("pdq", rng.randbytes(32), rng.randrange(50, 101))) for _ in range(count)]

    seconds = append_with_sequencer(helpline, entries)
    print(f"built {count:,} entries with the real sequencer in {seconds:.1f} s", flush=True)


def timed(*argv: str) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run([PYTHON, "-m", "node", *argv], check=True, cwd=ROOT, capture_output=True, text=True)
    return time.monotonic() - started, result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-backup-"))
    helpline = work / "helpline"
    if args.build_only:
        build(helpline, args.entries)
        return 0
    if not (helpline / "config.toml").exists():
        work.mkdir(parents=True, exist_ok=True)
        # A subprocess, so that building leaves nothing in this process.
        subprocess.run([PYTHON, __file__, "--entries", str(args.entries), "--work", str(work), "--build-only"],
                       check=True)
    for old in ("backup", "restored", "copy"):
        shutil.rmtree(work / old, ignore_errors=True)
    stop = threading.Event()
    appended = [0]
    with serving(helpline) as info:
        token = (helpline / "admin.token").read_text().strip()
        rng = random.Random(4)

        def writer():
            while not stop.is_set():
                body = "".join(json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": rng.randbytes(32).hex()})
                               + "\n" for _ in range(100)).encode()
                request = urllib.request.Request(info["admin_url"] + "/admin/append", data=body, method="POST",
                                                 headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                appended[0] += 100
                time.sleep(0.1)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(1)
        data_bytes = du(helpline)
        started = time.monotonic()
        shutil.copytree(helpline, work / "copy", ignore=shutil.ignore_patterns("lock", "serve.json"))
        copy_seconds = time.monotonic() - started
        try:
            seconds, out = timed("backup", str(helpline), str(work / "backup"), "--json")
        finally:
            stop.set()
            thread.join()
        report = json.loads(out)
    restore_seconds, _ = timed("restore", str(work / "backup"), str(work / "restored"))
    print(f"\nlog of {report['entries']:,} entries (checkpoint {report['size']:,}); data directory "
          f"{data_bytes / 1e6:,.0f} MB; {appended[0]:,} entries appended while measuring")
    print(f"cp -r of the data directory (baseline, not consistent)  {copy_seconds:6.1f} s")
    print(f"ncii-node backup while serving (consistent, verified)    {seconds:6.1f} s   "
          f"({seconds / copy_seconds:.1f}x the plain copy)  backup size {report['bytes'] / 1e6:,.0f} MB "
          f"in {report['files']:,} files")
    print(f"ncii-node restore (every file's SHA-256 checked)         {restore_seconds:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
