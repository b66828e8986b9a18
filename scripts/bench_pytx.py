#!/usr/bin/env python3
"""Benchmark: `threatexchange fetch` of a 1,000,000-entry log through node.interop.pytx,
against our own follower's catch-up of the same log in the same run, and `threatexchange
match photo` with the index that fetch built.

    .venv/bin/python scripts/bench_pytx.py [--entries 1000000] [--work DIR] [--matches 3]

1. BUILD: scripts/bench_follow.py builds the helpline log with the real sequencer
   (random PDQ submissions, a withdrawal every 1,000 entries; reused when --work holds
   it), then the node appends one more submission: the PDQ of a photo made here.
2. SERVE: `ncii-node serve` (restricted: every read signed with the platform's request
   key, RFC 9421, and checked).
3. FOLLOWER: node.follow.sync.Follower catches up into SQLite (scripts/bench_follow.py).
4. PYTX, in this process: the extension's fetch_iter alone (the same verification, the
   records built, no storage).
5. CLI: the unmodified `threatexchange` command, state in a temporary HOME:
   `config extensions add node.interop.pytx`, `config collab edit ncii_node ...`, then
   `fetch` (wall time and peak RSS of the process: the extension's round, the CLI's
   merge, its pickle of the state and its PDQ index build), then `match photo` of an
   edited copy of the photo (wall time of the whole command, as a person runs it:
   start-up, loading the stored index, hashing, the query); for comparison
   `ncii-node match --local` on the follower's database (builds our index from SQLite).

Prints each figure, and the ratios to the follower's catch-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
PYTHON = sys.executable
ORIGIN = "bench-helpline.example/log"


def threatexchange(home: Path, *args: str, check: bool = True) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run the CLI; (result, wall seconds, peak RSS in MB of the process)."""
    import psutil

    script = Path(PYTHON).with_name("threatexchange")
    command = [str(script)] if script.exists() else [PYTHON, "-m", "threatexchange"]
    env = {k: v for k, v in os.environ.items() if k not in ("TX_STATEDIR", "TX_VERBOSE")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    peak = 0.0
    started = time.monotonic()
    proc = subprocess.Popen([*command, *args], cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    done = threading.Event()

    def sample():
        nonlocal peak
        try:
            process = psutil.Process(proc.pid)
            while not done.is_set():
                peak = max(peak, process.memory_info().rss / 1e6)
                time.sleep(0.05)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise SystemExit(f"threatexchange {' '.join(args)} failed ({proc.returncode}):\n{err[-2000:]}")
    return result, seconds, peak


def fetch_in_process(url: str, vkey: str, key_file: Path, work: Path) -> dict:
    import psutil
    from threatexchange.signal_type.md5 import VideoMD5Signal
    from threatexchange.signal_type.pdq.signal import PdqSignal

    from node.interop.pytx import NCIINodeCollabConfig, NCIINodeSignalExchangeAPI

    collab = NCIINodeCollabConfig(url=url, vkey=vkey, request_key_file=str(key_file), name="bench", api="ncii_node",
                                  evidence_dir=str(work / "evidence"), timeout=30.0)
    api = NCIINodeSignalExchangeAPI.for_collab(collab)
    process = psutil.Process()
    base = process.memory_info().rss / 1e6
    started = time.monotonic()
    (delta,) = list(api.fetch_iter([PdqSignal, VideoMD5Signal], None))
    seconds = time.monotonic() - started
    records = sum(1 for v in delta.updates.values() if v is not None)
    grown = process.memory_info().rss / 1e6 - base
    del delta
    return {"seconds": seconds, "size": checkpoint_size(url, vkey), "records": records, "rss_grown_mb": grown}


def checkpoint_size(url: str, vkey: str) -> int:
    import urllib.request

    from protocol.checkpoint import open_checkpoint
    from protocol.note import Verifier

    with urllib.request.urlopen(url + "/checkpoint", timeout=10) as answer:
        cp, _ = open_checkpoint(answer.read(), [Verifier.from_vkey(vkey)])
    return cp.size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, help="working directory (kept; a built log is reused)")
    parser.add_argument("--matches", type=int, default=3, help="`match photo` runs (the median is printed)")
    args = parser.parse_args()

    import asyncio

    import bench_follow
    from bench_support import serving
    from demo import edit_photo, make_photo

    from node.datadir import DataDir

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-pytx-"))
    work.mkdir(parents=True, exist_ok=True)
    helpline, platform = work / "helpline", work / "platform"
    photo, edited = work / "photo.jpg", work / "photo-edited.jpg"
    make_photo(photo, 7)
    edit_photo(photo, edited)
    if not helpline.exists():
        bench_follow.cli("init", "--dir", str(helpline), "--origin", ORIGIN)
    built = bench_follow.log_size(helpline)
    if built not in (args.entries, args.entries + 1):
        if built != 0:
            print(f"{helpline} holds another log; use a new --work", file=sys.stderr)
            return 1
        subprocess.run([PYTHON, str(ROOT / "scripts" / "bench_follow.py"), "--entries", str(args.entries),
                        "--build-only", str(helpline)], check=True)
    if platform.exists():
        subprocess.run(["rm", "-rf", str(platform)], check=True)
    bench_follow.cli("init", "--dir", str(platform), "--origin", "bench-platform.example/log", "--role", "platform")
    vkey = DataDir(helpline).load_log_signer().verifier_key()
    request_vkey = DataDir(platform).load_request_signer().verifier_key()
    subprocess.run([PYTHON, "-m", "node", "readers", "add", "--dir", str(helpline), request_vkey], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    with serving(helpline) as info:
        url = info["public_url"]
        if built != args.entries + 1:
            (fp,) = [json.loads(line) for line in subprocess.run(
                [PYTHON, "-m", "node", "hash", "--json", str(photo)], cwd=ROOT, capture_output=True, text=True,
                check=True).stdout.splitlines()]
            line = json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": fp["fingerprint"],
                               "quality": fp["quality"], "labels": ["image"]})
            subprocess.run([PYTHON, "-m", "node", "append", "--dir", str(helpline)], input=line, text=True,
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            time.sleep(1.5)  # the next checkpoint
        size = checkpoint_size(url, vkey)
        print(f"log of {size:,} entries served by `ncii-node serve` at {url}; reads signed (RFC 9421) and checked",
              flush=True)

        # 3. our follower
        follower = asyncio.run(bench_follow.follow(platform, url, vkey, size, True))
        print(f"follower catch-up: {follower['seconds']:.1f} s ({size / follower['seconds']:,.0f} entries/s), "
              f"peak RSS {follower['peak_rss_mb']:.0f} MB", flush=True)

        # 4. the extension alone, in this process
        key_file = DataDir(platform).request_key_path
        alone = fetch_in_process(url, vkey, key_file, work)
        print(f"pytx fetch_iter alone (verify + records, no storage): {alone['seconds']:.1f} s "
              f"({size / alone['seconds']:,.0f} entries/s), {alone['records']:,} active records, "
              f"RSS +{alone['rss_grown_mb']:.0f} MB", flush=True)

        # 5. the CLI
        home = work / "txhome"
        if home.exists():
            subprocess.run(["rm", "-rf", str(home)], check=True)
        home.mkdir()
        threatexchange(home, "config", "extensions", "add", "node.interop.pytx")
        threatexchange(home, "config", "collab", "edit", "ncii_node", "bench", "--create", "--url", url,
                       "--vkey", vkey, "--request-key-file", str(key_file), "--timeout", "30")
        _, fetch_seconds, fetch_rss = threatexchange(home, "fetch")
        state = home / ".threatexchange" / "fetched" / "ncii_node" / "bench.state.pickle"
        index = home / ".threatexchange" / "index" / "pdq.index"
        print(f"threatexchange fetch (CLI: round + merge + pickle + PDQ index build): {fetch_seconds:.1f} s "
              f"({size / fetch_seconds:,.0f} entries/s), peak RSS {fetch_rss:.0f} MB; state "
              f"{state.stat().st_size / 1e6:.0f} MB, PDQ index {index.stat().st_size / 1e6:.0f} MB", flush=True)
        times, peaks, found = [], [], ""
        for _ in range(args.matches):
            result, seconds, peak = threatexchange(home, "match", "photo", str(edited))
            times.append(seconds)
            peaks.append(peak)
            found = result.stdout.strip()
        assert f"{ORIGIN}#" in found, found
        print(f"threatexchange match photo (whole command), median of {len(times)}: {statistics.median(times):.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in times)}), peak RSS {max(peaks):.0f} MB; found: {found}",
              flush=True)
        ours = []
        for _ in range(args.matches):
            started = time.monotonic()
            out = subprocess.run([PYTHON, "-m", "node", "match", "--dir", str(platform), "--local", "--json",
                                  str(edited)], cwd=ROOT, capture_output=True, text=True, check=True).stdout
            ours.append(time.monotonic() - started)
        assert json.loads(out.splitlines()[0])["total"] >= 1
        print(f"ncii-node match --local (builds the index from SQLite, then matches), median: "
              f"{statistics.median(ours):.2f} s", flush=True)
        print(json.dumps({
            "entries": size,
            "follower_catch_up_s": round(follower["seconds"], 1),
            "follower_peak_rss_mb": round(follower["peak_rss_mb"]),
            "pytx_fetch_iter_s": round(alone["seconds"], 1),
            "threatexchange_fetch_s": round(fetch_seconds, 1),
            "threatexchange_fetch_peak_rss_mb": round(fetch_rss),
            "threatexchange_match_photo_s": round(statistics.median(times), 2),
            "ncii_node_match_local_s": round(statistics.median(ours), 2),
            "ratio_fetch_iter_to_follower": round(alone["seconds"] / follower["seconds"], 2),
            "ratio_cli_fetch_to_follower": round(fetch_seconds / follower["seconds"], 2),
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
