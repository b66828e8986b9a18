"""A hostile helpline cannot slow a platform's matching, end to end.

Two real nodes, each an `ncii-node serve` process on 127.0.0.1: a helpline whose log
the platform follows (signed reads), and the platform's match API. The helpline is compromised: through its own admin API
it appends 30,000 near-copies of one fingerprint (6 bits flipped each), as the attack
of issue 19. While the platform's follower verifies and applies them, and after, the
match API keeps answering unrelated queries exactly (brute force over what it should
hold) and within a bound; the cluster is held out of the index and shown in status;
the operator releases it with `ncii-node match-release`, after which a query at the
cluster answers its nearest 100 and the total (30,000) in bounded time."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import numpy as np

from node.datadir import DataDir
from protocol.signals import PDQ
from follow_support import near_copies
from publish_support import append
from test_cases_cycle import Node, ncii

HELPLINE = "helpline.example/log"
COPIES = 30_000
BASE = 3_000
# An unrelated query answered over HTTP on loopback takes about a millisecond here. On a
# 2-core machine shared with other work any one request may wait for a core, so the
# bounds are on the 95th percentile (and a hard cap on the slowest): wide enough for a
# loaded machine, far below a node that stalls while it applies the attack.
UNRELATED_P95_S = 0.25
SLOWEST_S = 2.0
AT_CLUSTER_BOUND_S = 1.0


def p95(latencies: list[float]) -> float:
    return sorted(latencies)[int(0.95 * (len(latencies) - 1))]


def submission_line(fingerprint: bytes) -> str:
    return json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": fingerprint.hex()})


class Probe:
    """Sends unrelated queries to the platform's match API and keeps what it saw."""

    def __init__(self, session, node: Node, token, queries, expected):
        self.session, self.node, self.headers = session, node, {"Authorization": f"Bearer {token}"}
        self.queries, self.expected = queries, expected
        self.latencies: list[float] = []
        self.wrong: list = []

    async def once(self, i: int) -> None:
        query = self.queries[i % len(self.queries)]
        start = time.perf_counter()
        async with self.session.post(self.node.admin_url + "/v1/match", headers=self.headers,
                                     json={"signal": "pdq", "fingerprint": query.hex()}) as r:
            answer = await r.json()
        self.latencies.append(time.perf_counter() - start)
        if r.status != 200:
            self.wrong.append((r.status, answer))
            return
        got = [(m["distance"], m["index"]) for m in answer["matches"]]
        if got != self.expected[query] or answer["total"] != len(self.expected[query]):
            self.wrong.append((query.hex(), got, self.expected[query]))

    async def run_until(self, done: asyncio.Event) -> None:
        i = 0
        while not done.is_set():
            await self.once(i)
            i += 1
            await asyncio.sleep(0.005)


async def test_a_hostile_log_cannot_slow_the_platforms_matching(tmp_path):
    rng = np.random.default_rng(190)
    publisher = Node(tmp_path / "helpline", HELPLINE, "helpline")
    matcher_node = Node(tmp_path / "platform", "platform.example/log", "platform")
    helpline, platform = DataDir(publisher.root), DataDir(matcher_node.root)
    ncii("readers", "add", "--dir", str(helpline.root), platform.load_request_signer().verifier_key())
    try:
        publisher.start()
        matcher_node.start()
        ncii("follow", "add", "--dir", str(platform.root), publisher.url, "--vkey",
             helpline.load_log_signer().verifier_key(), "--interval", "0.1")
        async with aiohttp.ClientSession() as session:
            admin = helpline.admin_token()
            base = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(BASE)]
            status, _ = await append(session, publisher.admin_url, admin, [submission_line(fp) for fp in base])
            assert status == 200

            async def platform_status() -> dict:
                async with session.get(matcher_node.admin_url + "/status") as r:
                    return await r.json()

            async def wait_for_size(size: int, timeout: float = 60.0) -> dict:
                deadline = time.monotonic() + timeout
                while True:
                    report = await platform_status()
                    if report["logs"] and report["logs"][0]["size"] == size:
                        return report
                    assert time.monotonic() < deadline, f"the platform did not reach size {size}: {report}"
                    await asyncio.sleep(0.1)

            await wait_for_size(BASE)
            # unrelated queries: fresh fingerprints, and some near base entries (exact answers known)
            queries = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(20)]
            queries += [near_copies(rng, base[i], 1, d)[0] for i, d in ((5, 0), (77, 12), (900, 31), (1200, 32))]
            expected = {q: sorted((PDQ.distance(q, fp), i) for i, fp in enumerate(base)
                                  if PDQ.distance(q, fp) <= 31) for q in queries}
            token = platform.admin_token()
            probe = Probe(session, matcher_node, token, queries, expected)
            deadline = time.monotonic() + 20
            while True:  # the index is built once the follower's first round is in
                async with session.get(matcher_node.admin_url + "/v1/match/status",
                                       headers={"Authorization": f"Bearer {token}"}) as r:
                    if r.status == 200 and (await r.json())["pdq"] == BASE:
                        break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            for i in range(2 * len(queries)):
                await probe.once(i)
            assert not probe.wrong, probe.wrong[:3]
            baseline = sorted(probe.latencies)[len(probe.latencies) // 2]

            # the attack, through the helpline's own admin API, while the platform keeps matching
            centre = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
            copies = near_copies(rng, centre, COPIES, 6)
            done = asyncio.Event()
            probing = asyncio.create_task(probe.run_until(done))
            try:
                for start in range(0, COPIES, 10_000):
                    status, _ = await append(session, publisher.admin_url, admin,
                                             [submission_line(fp) for fp in copies[start:start + 10_000]])
                    assert status == 200
                await wait_for_size(BASE + COPIES)
                # the matcher hears of a round once it is committed: wait until it has held them all
                keep = platform.config.match.cluster_keep
                deadline = time.monotonic() + 30
                while (report := await platform_status())["logs"][0]["held"]["cluster"] < COPIES - keep:
                    assert time.monotonic() < deadline, report["logs"][0]["held"]
                    await asyncio.sleep(0.1)
            finally:
                done.set()
                await probing
            during = len(probe.latencies) - 2 * len(queries)
            assert during > 10 and not probe.wrong, probe.wrong[:3]
            during_attack = probe.latencies[2 * len(queries):]
            print(f"unrelated queries over HTTP: before the attack p50 {baseline * 1e3:.2f} ms; while it was "
                  f"applied ({len(during_attack)}) p50 {sorted(during_attack)[len(during_attack) // 2] * 1e3:.2f} ms, "
                  f"p95 {p95(during_attack) * 1e3:.2f} ms, max {max(during_attack) * 1e3:.2f} ms")
            assert p95(during_attack) < UNRELATED_P95_S and max(during_attack) < SLOWEST_S, \
                (p95(during_attack), max(during_attack), baseline)

            # held, loudly: the follower verified and stored everything, the index holds 16
            [held] = report["held_clusters"]
            assert held["origin"] == HELPLINE and held["members"] == COPIES - keep
            assert report["logs"][0]["held"] == {"cluster": COPIES - keep, "budget": 0}
            async with session.get(matcher_node.admin_url + "/v1/match/status",
                                   headers={"Authorization": f"Bearer {token}"}) as r:
                stats = await r.json()
            assert stats["pdq"] == BASE + keep and stats["held"]["cluster"] == COPIES - keep
            assert f"!!! HELD CLUSTER {held['id']}: log {HELPLINE}" in ncii("status", "--dir", str(platform.root)).stdout
            async with session.get(matcher_node.admin_url + "/metrics", headers=probe.headers) as r:
                metrics = await r.text()
            assert f'ncii_follow_held{{origin="{HELPLINE}",reason="cluster"}} {float(COPIES - keep)}' in metrics
            assert f'ncii_follow_held_clusters{{origin="{HELPLINE}"}} 1.0' in metrics
            async with session.post(matcher_node.admin_url + "/v1/match", headers=probe.headers,
                                    json={"signal": "pdq", "fingerprint": centre.hex()}) as r:
                at_cluster = await r.json()
            assert at_cluster["total"] == keep  # the log's earliest copies still match
            assert [m["index"] for m in at_cluster["matches"]] == list(range(BASE, BASE + keep))

            # the operator releases it: a query at the cluster gets the nearest 100 and the
            # total, in bounded time; unrelated queries stay exact and fast
            # bad releases are refused without harm: unknown, absurd, or with the match token
            for body, status in (({"cluster": held["id"] + 1}, 404), ({"cluster": -2**70}, 400),
                                 ({"cluster": "1"}, 400), ({"id": 1}, 400)):
                async with session.post(matcher_node.admin_url + "/v1/match/release", json=body,
                                        headers=probe.headers) as r:
                    assert r.status == status, (body, await r.text())
            match_token = {"Authorization": f"Bearer {platform.match_token()}"}
            async with session.post(matcher_node.admin_url + "/v1/match/release", json={"cluster": held["id"]},
                                    headers=match_token) as r:
                assert r.status == 401
            released = ncii("match-release", "--dir", str(platform.root), str(held["id"])).stdout
            assert json.loads(released)["indexed"] == COPIES - keep
            timings = []
            for query in [centre] + near_copies(rng, centre, 3, 2):
                start = time.perf_counter()
                async with session.post(matcher_node.admin_url + "/v1/match", headers=probe.headers,
                                        json={"signal": "pdq", "fingerprint": query.hex()}) as r:
                    answer = await r.json()
                timings.append(time.perf_counter() - start)
                distances = sorted(PDQ.distance(query, fp) for fp in copies)
                assert answer["total"] == COPIES
                assert [m["distance"] for m in answer["matches"]] == distances[:100]
            print(f"queries at the released cluster of {COPIES:,}: " + ", ".join(f"{t * 1e3:.1f} ms" for t in timings))
            assert max(timings) < AT_CLUSTER_BOUND_S, timings
            before = len(probe.latencies)
            for i in range(len(queries)):
                await probe.once(i)
            assert not probe.wrong and p95(probe.latencies[before:]) < UNRELATED_P95_S
            assert not (await platform_status())["held_clusters"]
    finally:
        matcher_node.stop()
        publisher.stop()
