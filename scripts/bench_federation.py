#!/usr/bin/env python3
"""N followers of one helpline: what they cost it, idle and under load (issue 22).

    .venv/bin/python scripts/bench_federation.py                      # N = 100, 500, 1000
    .venv/bin/python scripts/bench_federation.py --sizes 1000 --idle-seconds 40
    options: --workers K (client processes, default 4), --rate R (entries/s, default 2),
             --load-seconds S, --max-waiting M (the node's [push] max_waiting; default: its own)

One real `ncii-node serve` (a helpline whose log is read-restricted) in a process of
its own, with N registered readers. N lightweight followers, spread over K client
processes and over loopback source addresses (127.0.x.y, one per follower), each with
its own request key, do what a follower does over real HTTP/1.1 keep-alive connections
with real RFC 9421 signatures: wait on the push channel, and on each new checkpoint read
the level-0 hash tile and the entry bundle holding the new entries (signed reads).
Each N runs once per --modes entry against the same node: `stream` holds one signed
GET /push/stream?wait=30 and takes a frame per checkpoint (following.md §4.3);
`checkpoint` sends a signed GET /push/checkpoint?wait=30 (If-None-Match) per checkpoint
(the design before §4.3). By default they name the size they hold
(`have=`, following.md §4.2) and take the tile and bundle from the push answer when it
carries them, as node/follow does; `--no-parts` makes them fetch them as before. They verify nothing (the node's cost is
what is measured, and Python clients are the limit on a 2-core machine). One follower
in ten also reads /checkpoint every second during the load phase (a C2SP reader or
monitor polling).

For each N it prints: the node's CPU (% of one core) while idle (every follower
waiting, --idle-seconds) and while --rate entries/s are appended (POST /admin/append,
one submission each, as a case's intake would); p99 of the /checkpoint reads and of
the tile and bundle reads; errors (any status but 200/304, any network error; 503s
counted apart); and the time from each append request until every follower holds the
new entry's checkpoint from the push channel, and until every follower has read its
bundle (p50 and worst over the entries), with the node's open file
descriptors and memory. The client processes share the 2 cores with the node: the
figures are an upper bound of what the node itself needs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

PYTHON = sys.executable
WAIT = 30


def signer_for(i: int):
    from node.readaccess import RequestSigner

    return RequestSigner.from_seed(f"follower-{i}.example/log", hashlib.sha256(b"bench-federation %d" % i).digest())


class FastSigner:
    """The RFC 9421 signature node.readaccess.RequestSigner makes, for the one form it
    makes (GET; @method @authority @path @query), built by hand: the library takes
    0.5 ms a signature, which on this 2-core machine made the clients, not the node,
    the limit. `check()` compares it with RequestSigner's, byte for byte, at start."""

    def __init__(self, i: int):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.slow = signer_for(i)
        self.keyid = self.slow.keyid
        self.key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench-federation %d" % i).digest())

    def sign_headers(self, method: str, url: str, now: float | None = None, nonce: str | None = None) -> dict:
        import base64
        import secrets
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        created = int(time.time() if now is None else now)
        nonce = nonce if nonce is not None else secrets.token_urlsafe(24)
        params = (f'("@method" "@authority" "@path" "@query");created={created};keyid="{self.keyid}";'
                  f'alg="ed25519";expires={created + 10};nonce="{nonce}";tag="ncii-node-read"')
        base = (f'"@method": {method}\n"@authority": {parts.netloc}\n"@path": {parts.path}\n'
                f'"@query": ?{parts.query}\n"@signature-params": {params}')
        signature = base64.b64encode(self.key.sign(base.encode())).decode()
        return {"Signature-Input": f"ncii={params}", "Signature": f"ncii=:{signature}:"}

    def check(self) -> None:
        for url in ("http://127.0.0.1:8080/push/checkpoint?wait=30", "http://127.0.0.1:8080/tile/0/000.p/5"):
            ours = self.sign_headers("GET", url, now=1_000_000_000, nonce="n" * 32)
            assert ours == self.slow.sign_headers("GET", url, now=1_000_000_000, nonce="n" * 32), (ours, url)


def source_address(i: int) -> str:
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------- client side

class Connection:
    """One HTTP/1.1 keep-alive connection from a chosen source address; answers must
    carry Content-Length (the node's do)."""

    def __init__(self, host: str, port: int, source: str):
        self.host, self.port, self.source = host, port, source
        self.reader = self.writer = None

    async def _request(self, path: str, headers: dict[str, str]) -> tuple[int, dict]:
        """Send a GET; (status, header fields in lower case) of its answer."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port,
                                                                     local_addr=(self.source, 0))
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        answer = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                answer[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), answer

    # One deadline per exchange (asyncio.timeout, a timer), not a wait_for per read (a
    # task each): the clients share the 2 cores with the node they measure.

    async def get(self, path: str, headers: dict[str, str], timeout: float) -> tuple[int, dict, bytes]:
        try:
            async with asyncio.timeout(timeout):
                status, answer = await self._request(path, headers)
                length = int(answer.get("content-length", "0"))
                body = await self.reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if answer.get("connection", "").lower() == "close":
            self.close()
        return status, answer, body

    async def stream(self, path: str, headers: dict[str, str], timeout: float):
        """GET of a chunked answer (the push stream): yields (status, headers) once, then
        each chunk's bytes as it comes, until the last chunk; all within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                status, answer = await self._request(path, headers)
                yield status, answer
                if answer.get("transfer-encoding", "").lower() != "chunked":
                    length = int(answer.get("content-length", "0"))
                    if length:
                        await self.reader.readexactly(length)
                    return
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                    data = await self.reader.readexactly(size + 2)
                    if size == 0:
                        return
                    yield data[:-2]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Follower:
    def __init__(self, i: int, host: str, port: int, stats, parts: bool, stream: bool):
        self.i, self.host, self.port, self.stats, self.parts, self.stream = i, host, port, stats, parts, stream
        self.signer = FastSigner(i)
        self.source = source_address(i)
        self.conn = Connection(host, port, self.source)
        self.reads = Connection(host, port, self.source) if stream else self.conn  # the stream holds `conn`
        self.size = None
        self.held: list[tuple[int, float]] = []  # (size, when its bundle was read)
        self.pushed: list[tuple[int, float]] = []  # (size, when the push channel brought its checkpoint)
        self.ready = asyncio.Event()

    def signed(self, path: str) -> dict[str, str]:
        return self.signer.sign_headers("GET", f"http://{self.host}:{self.port}{path}")

    async def read(self, path: str, kind: str) -> bytes:
        started = time.monotonic()
        status, _, body = await self.reads.get(path, self.signed(path), 10)
        self.stats["latency"][kind].append(time.monotonic() - started)
        if status != 200:
            raise Failure(status)
        return body

    async def pushed_checkpoint(self, body: bytes, parts: dict) -> None:
        """A checkpoint from the push channel: take its entry's tile and bundle from the
        parts it came with, or read them (as a follower at the head would)."""
        from protocol.tiles import TILE_WIDTH, entries_path, tile_for_size

        size = int(body.split(b"\n")[1])
        if self.size is None:
            self.size = size
            self.ready.set()
            return
        if size > self.size:
            self.pushed.append((size, time.monotonic()))
            index = (size - 1) // TILE_WIDTH
            width = size - index * TILE_WIDTH
            for wanted in (tile_for_size(0, index, size).path(), entries_path(index, width)):
                if wanted in parts:
                    self.stats["pushed parts"] += 1
                else:
                    await self.read("/" + wanted, "tile")
            self.size = size
            self.held.append((size, time.monotonic()))

    async def follow(self) -> None:
        if self.stream:
            await self.follow_stream()
            return
        from node.follow.push import PARTS_TYPE, parse_parts

        etag = None
        while True:
            path = f"/push/checkpoint?wait={WAIT}"
            if self.parts and self.size is not None:
                path += f"&have={self.size}"
            headers = self.signed(path)
            if etag:
                headers["If-None-Match"] = etag
            try:
                status, answer, body = await self.conn.get(path, headers, WAIT + 15)
                if status == 304:
                    continue
                if status != 200:
                    raise Failure(status)
                etag = answer.get("etag")
                parts = {}
                if answer.get("content-type", "").startswith(PARTS_TYPE):
                    body, parts = parse_parts(body)
                await self.pushed_checkpoint(body, parts)
            except asyncio.CancelledError:
                raise
            except Failure as exc:
                self.stats["errors"][f"HTTP {exc.status}"] += 1
                etag = None
                await asyncio.sleep(1)
            except Exception as exc:  # noqa: BLE001 - counted, then on again
                self.stats["errors"][type(exc).__name__] += 1
                etag = None
                await asyncio.sleep(1)

    async def follow_stream(self) -> None:
        """The push stream (following.md §4.3): one signed request, a frame per checkpoint."""
        from node.follow.push import FrameReader, checkpoint_etag, parse_parts

        etag = None
        while True:
            path = f"/push/stream?wait={WAIT}"
            if self.parts and self.size is not None:
                path += f"&have={self.size}"
            headers = self.signed(path)
            if etag:
                headers["If-None-Match"] = etag
            try:
                chunks = self.conn.stream(path, headers, WAIT + 15)
                status, _ = await chunks.__anext__()
                if status != 200:
                    async for _ in chunks:
                        pass
                    raise Failure(status)
                frames = FrameReader()
                async for data in chunks:
                    while data:  # the reader takes at most what it asks for
                        take = frames.wanted()
                        frames.feed(data[:take])
                        data = data[take:]
                        while (frame := frames.next_frame()) is not None:
                            body, parts = parse_parts(frame)
                            etag = checkpoint_etag(body)
                            await self.pushed_checkpoint(body, parts)
                assert frames.between_frames, "stream ended inside a frame"
            except asyncio.CancelledError:
                raise
            except Failure as exc:
                self.stats["errors"][f"HTTP {exc.status}"] += 1
                etag = None
                await asyncio.sleep(1)
            except Exception as exc:  # noqa: BLE001 - counted, then on again
                self.stats["errors"][type(exc).__name__] += 1
                self.conn.close()  # whatever is left of the stream is not the next answer
                etag = None
                await asyncio.sleep(1)

    async def poll_checkpoint(self) -> None:
        conn = Connection(self.host, self.port, self.source)
        try:
            while True:
                started = time.monotonic()
                try:
                    status, _, _ = await conn.get("/checkpoint", {}, 10)
                    self.stats["latency"]["checkpoint"].append(time.monotonic() - started)
                    if status != 200:
                        self.stats["errors"][f"HTTP {status}"] += 1
                except Exception as exc:  # noqa: BLE001
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    self.stats["errors"][type(exc).__name__] += 1
                await asyncio.sleep(max(0.0, started + 1 - time.monotonic()))
        finally:
            conn.close()


class Failure(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


async def worker_main() -> None:
    """A client process: followers given on stdin; "load" and "stop" on stdin; the
    results as one JSON line on stdout."""
    raise_fd_limit()
    spec = json.loads(sys.stdin.readline())
    FastSigner(0).check()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    stats = {"latency": collections.defaultdict(list), "errors": collections.Counter(), "pushed parts": 0}
    followers = [Follower(i, spec["host"], spec["port"], stats, spec["parts"], spec["stream"])
                 for i in spec["indices"]]
    tasks = []
    for k, follower in enumerate(followers):
        tasks.append(asyncio.create_task(follower.follow()))
        if k % 20 == 19:
            await asyncio.sleep(0.01)  # do not open every connection in the same instant
    await asyncio.gather(*(f.ready.wait() for f in followers))
    print("ready", flush=True)
    while (line := (await stdin.readline()).decode()) and line.strip() != "stop":  # EOF: the parent is gone
        if line.strip() == "load":
            stats["latency"].clear()
            tasks += [asyncio.create_task(f.poll_checkpoint()) for f in followers if f.i % 10 == 0]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for follower in followers:
        follower.conn.close()
        follower.reads.close()
    print(json.dumps({"latency": stats["latency"], "errors": stats["errors"], "pushed_parts": stats["pushed parts"],
                      "held": [f.held for f in followers], "pushed": [f.pushed for f in followers]}), flush=True)


# ---------------------------------------------------------------------- the node side

def make_node(tmp: Path, readers: int, max_waiting: int | None) -> Path:
    from node.cli import main as cli_main
    from node.datadir import DataDir
    from node.readaccess import request_key_id
    from node.store import open_db

    root = tmp / "helpline"
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        assert cli_main(["init", "--dir", str(root), "--origin", "bench.example/helpline"]) == 0
    datadir = DataDir(root)
    if max_waiting is not None:
        config = datadir.config
        config.push.max_waiting = max_waiting
        datadir.save_config(config)
    db = open_db(datadir.db_path)
    with db:
        for i in range(readers):
            vkey = signer_for(i).keyid
            db.readers.add_reader(vkey, f"follower {i}", request_key_id(vkey))
    db.close()
    return root


async def append_one(session, admin: str, token: str, n: int) -> None:
    line = json.dumps({"kind": "submission", "signal": "pdq",
                       "fingerprint": hashlib.sha256(b"bench %d" % n).hexdigest()}) + "\n"
    async with session.post(admin + "/admin/append", data=line,
                            headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.read()
        if r.status != 200:
            raise RuntimeError(f"append: HTTP {r.status} {body[:200]!r}")


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_size(n: int, info: dict, token: str, pid: int, args, mode: str) -> dict:
    import aiohttp
    import psutil

    host, port = info["public_url"].removeprefix("http://").rsplit(":", 1)
    node = psutil.Process(pid)
    workers = []
    for w in range(args.workers):
        proc = await asyncio.create_subprocess_exec(
            PYTHON, __file__, "--worker", stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, limit=2**28)
        proc.stdin.write((json.dumps({"host": host, "port": int(port), "parts": args.parts, "stream": mode == "stream",
                                      "indices": list(range(w, n, args.workers))}) + "\n").encode())
        await proc.stdin.drain()
        workers.append(proc)
    started = time.monotonic()
    for proc in workers:
        line = await asyncio.wait_for(proc.stdout.readline(), 300)
        assert line.strip() == b"ready", line
    connected = time.monotonic() - started
    await asyncio.sleep(2)

    def cpu(process=node) -> float:
        times = process.cpu_times()
        return times.user + times.system

    clients = [psutil.Process(proc.pid) for proc in workers]

    before, at = cpu(), time.monotonic()
    await asyncio.sleep(args.idle_seconds)
    idle = (cpu() - before) / (time.monotonic() - at) * 100
    fds_idle = node.num_fds()

    for proc in workers:
        proc.stdin.write(b"load\n")
    await asyncio.sleep(1)
    appended: list[tuple[float, int]] = []  # (when the append request was sent, size after it)
    async with aiohttp.ClientSession() as session:
        async with session.get(info["public_url"] + "/checkpoint") as r:
            size = int((await r.read()).split(b"\n")[1])
        before, at = cpu(), time.monotonic()
        clients_before = sum(cpu(c) for c in clients)
        end = at + args.load_seconds
        k = 0
        append_errors = collections.Counter()
        while time.monotonic() < end:
            sent = time.monotonic()
            try:
                await append_one(session, info["admin_url"], token, size + len(appended))
                appended.append((sent, size + len(appended) + 1))
            except Exception as exc:  # noqa: BLE001 - an overloaded node: counted, shown
                append_errors[str(exc)[:120]] += 1
            k += 1
            await asyncio.sleep(max(0.0, at + k / args.rate - time.monotonic()))
        load = (cpu() - before) / (time.monotonic() - at) * 100
        clients_load = (sum(cpu(c) for c in clients) - clients_before) / (time.monotonic() - at) * 100
    await asyncio.sleep(5)  # the last entries reach the slowest followers
    fds_load, rss = node.num_fds(), node.memory_info().rss
    round_cpu = cpu() - before  # the node's CPU for every follower round of the load phase

    latency, errors, held, pushed, pushed_parts = collections.defaultdict(list), collections.Counter(), [], [], 0
    for proc in workers:
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
        result = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        await proc.wait()
        for kind, values in result["latency"].items():
            latency[kind] += values
        errors.update(result["errors"])
        pushed_parts += result["pushed_parts"]
        held += result["held"]
        pushed += result["pushed"]
    def until_all(records: list) -> list[float]:
        """Per entry: seconds from its append request until every follower had it (inf: one never did)."""
        return [max(next((t for s, t in r if s >= target), float("inf")) for r in records) - sent
                for sent, target in appended]

    seen, told = until_all(held), until_all(pushed)
    first = [min(next((t for s, t in r if s >= target), float("inf")) for r in pushed) - sent
             for sent, target in appended]
    rounds = sum(len(r) for r in pushed)
    return {"n": n, "mode": mode, "load_average": os.getloadavg()[0], "connected": connected, "idle": idle, "load": load, "clients_load": clients_load,
            "checkpoint_p99": p(latency["checkpoint"], 0.99) * 1000, "tile_p99": p(latency["tile"], 0.99) * 1000,
            "reads": {**{k: len(v) for k, v in latency.items()}, "taken from push answers": pushed_parts},
            "errors": dict(errors),
            "seen_p50": p(seen, 0.5), "seen_max": max(seen) if seen else float("nan"),
            "pushed_p50": p(told, 0.5), "pushed_max": max(told) if told else float("nan"),
            "first_pushed_p50": p(first, 0.5), "rounds": rounds,
            "ms_per_round": round_cpu * 1000 / rounds if rounds else float("nan"),
            "entries": len(appended), "append_errors": dict(append_errors), "fds_idle": fds_idle, "fds_load": fds_load, "rss_mb": rss / 2**20}


async def bench(args) -> None:
    from bench_support import serving
    from node.datadir import DataDir

    raise_fd_limit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-federation-"))
    try:
        root = make_node(tmp, max(args.sizes), args.max_waiting)
        with serving(root, profile=args.profile_node, source=args.node_source) as info:
            token = DataDir(root).admin_token()
            print(f"one helpline (`ncii-node serve`, reads restricted to {max(args.sizes):,} registered readers); "
                  f"followers in {args.workers} client processes; {args.rate:g} entries/s for {args.load_seconds:g} s; "
                  f"idle {args.idle_seconds:g} s; followers {'take tiles from push answers (have=)' if args.parts else 'fetch every tile (--no-parts)'}; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            print(f"{'N':>6} {'channel':>10} {'idle CPU':>9} {'load CPU':>9} {'ckpt p99':>9} {'tile p99':>9} {'errors':>8} "
                  f"{'all pushed p50/max':>19} {'all read p50/max':>17} {'fds idle/load':>14} {'RSS':>7} {'clients':>8} "
                  f"{'1st pushed':>10} {'node ms/round':>13}", flush=True)
            for n, mode in ((n, mode) for n in args.sizes for mode in args.modes):
                r = await run_size(n, info, token, info["pid"], args, mode)
                errors = sum(r["errors"].values())
                print(f"{n:>6} {mode:>10} {r['idle']:>8.1f}% {r['load']:>8.1f}% {r['checkpoint_p99']:>7.0f}ms "
                      f"{r['tile_p99']:>7.0f}ms {errors:>8} {r['pushed_p50']:>9.2f}s /{r['pushed_max']:>6.2f}s "
                      f"{r['seen_p50']:>7.2f}s /{r['seen_max']:>6.2f}s "
                      f"{r['fds_idle']:>6}/{r['fds_load']:<6} {r['rss_mb']:>5.0f}MB {r['clients_load']:>7.0f}% "
                      f"{r['first_pushed_p50']:>9.2f}s {r['ms_per_round']:>13.3f}"
                      + (f"   errors: {r['errors']}" if errors else "")
                      + (f"   appends refused: {r['append_errors']}" if r["append_errors"] else "")
                      + f"   (load average {r['load_average']:.1f})", flush=True)
                if args.json:
                    with open(args.json, "a") as out:
                        out.write(json.dumps(r) + "\n")
            print("(clients: the CPU of the client processes under load, on the same 2 cores; 1st pushed: p50 of the "
                  "time until the first follower had the entry's checkpoint; node ms/round: the node's CPU from the "
                  "first append until 5 s after the last, per follower round, i.e. per new checkpoint a follower "
                  "received: what a checkpoint costs the node per follower, whatever the machine's load)")
            print(f"(CPU in % of one core; all followers connected and waiting in {r['connected']:.1f} s at "
                  f"N = {n}; {r['reads']} reads measured under load; load average {os.getloadavg()[0]:.1f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    if sys.argv[1:] == ["--worker"]:
        asyncio.run(worker_main())
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 500, 1000])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--max-waiting", type=int)
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["stream", "checkpoint"],
                        help="how followers wait, each N run once per mode against the same node: stream "
                             "(GET /push/stream, following.md §4.3) and/or checkpoint (GET /push/checkpoint, "
                             "a signed request per checkpoint; the design before §4.3)")
    parser.add_argument("--no-parts", dest="parts", action="store_false",
                        help="followers do not name their size: tiles and bundles are fetched (as before §4.2)")
    parser.add_argument("--json", help="append each N's figures here (JSON lines)")
    parser.add_argument("--profile-node", metavar="FILE", help="run the node under cProfile, statistics to FILE")
    parser.add_argument("--node-source", type=Path, metavar="DIR",
                        help="run the node from this checkout (e.g. `git worktree add DIR main`, with its "
                             "_pdqindex built): a baseline in the same run; use --no-parts with one before §4.2")
    asyncio.run(bench(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
