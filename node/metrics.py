"""What a running node measures in memory, and its Prometheus exposition.

One `NodeMetrics` per node (node.runtime.Node.metrics), with its own registry: tests and
benchmarks run several nodes in one process, and their figures must not mix.

Measured in memory (since the process started, as Prometheus counters are):
    ncii_http_requests_total{site,route,status}   every answer of both sites
    ncii_match_seconds                            one match request (histogram)
    ncii_matches_total{origin}                    entries matched, per followed log
    ncii_sequencer_batch_seconds                  one published batch (histogram)
Read from the database at each scrape (`store_families`; they survive restarts):
    ncii_log_size, ncii_log_entries_total{kind,detail}, ncii_cases_created_total,
    ncii_cases_withdrawn_total, ncii_feedback_received_total{platform,verdict},
    ncii_follow_size / _lag_entries / _lag_seconds / _errors_total / _failing /
    _forked {origin}, ncii_follow_held{origin,reason}, ncii_follow_held_clusters{origin},
    ncii_index_fingerprints{signal}, ncii_index_bytes.

Label values are only ever: a route's pattern (never the requested path), a status
code, a site name, the origin of a followed log, a verdict, an entry kind or signal.
No label can hold a case number, a client address or a fingerprint: case numbers
travel in request bodies, and an unknown path is labelled "(no route)".
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from protocol.signals import SIGNALS

# The `_created` series (a timestamp per counter) only double the exposition's size.
disable_created_metrics()

#: Match requests answer in about a millisecond; media (hashing an upload) in seconds.
MATCH_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: A batch is a few milliseconds to a second or two (200,000 entries).
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Recent match latencies kept for the console's percentiles.
LATENCY_SAMPLES = 10_000


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter("ncii_http_requests", "HTTP answers by site, route pattern and status",
                                     ["site", "route", "status"], registry=self.registry)
        self.match_seconds = Histogram("ncii_match_seconds", "Time to answer one match request (seconds)",
                                       buckets=MATCH_BUCKETS, registry=self.registry)
        self.matches = Counter("ncii_matches", "Entries matched by match requests, per followed log",
                               ["origin"], registry=self.registry)
        self.batch_seconds = Histogram("ncii_sequencer_batch_seconds",
                                       "Time to store, tile and sign one batch of the node's log (seconds)",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        ProcessCollector(registry=self.registry)
        self._store = _StoreCollector()
        self.registry.register(self._store)
        self._lock = threading.Lock()
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)
        self._pending_queries = 0
        self._pending_matches: collections.Counter[str] = collections.Counter()

    # -- observing -----------------------------------------------------------------------
    def observe_request(self, site: str, route: str, status: int) -> None:
        self.http_requests.labels(site, route, str(status)).inc()

    def observe_batch(self, entries: int, seconds: float) -> None:
        self.batch_seconds.observe(seconds)

    def observe_match(self, seconds: float, queries: int, matched_origins: Iterable[str]) -> None:
        """One match request: its time, how many queries, the origin of each hit."""
        self.match_seconds.observe(seconds)
        hits = collections.Counter(matched_origins)
        for origin, n in hits.items():
            self.matches.labels(origin).inc(n)
        with self._lock:
            self._latencies.append(seconds)
            self._pending_queries += queries
            self._pending_matches.update(hits)

    # -- reading ----------------------------------------------------------------------------
    def latency_percentiles(self) -> dict:
        """p50/p95/p99 (milliseconds) of the last LATENCY_SAMPLES match requests."""
        with self._lock:
            samples = sorted(self._latencies)
        if not samples:
            return {"requests": 0}
        # Nearest rank: the smallest sample with at least q of all samples at or below it.
        pick = lambda q: round(samples[max(0, math.ceil(q * len(samples)) - 1)] * 1000, 3)  # noqa: E731
        return {"requests": len(samples), "p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
                "max_ms": round(samples[-1] * 1000, 3)}

    def take_pending_matches(self) -> tuple[int, dict[str, int]]:
        """(queries, {origin: matches}) counted since the last call, to be stored."""
        with self._lock:
            queries, matches = self._pending_queries, dict(self._pending_matches)
            self._pending_queries = 0
            self._pending_matches.clear()
        return queries, matches

    def give_back_matches(self, queries: int, matches: dict[str, int]) -> None:
        """Storing them failed: keep them for the next attempt."""
        with self._lock:
            self._pending_queries += queries
            self._pending_matches.update(matches)

    def exposition(self, store_snapshot: dict) -> bytes:
        """The text format, with the database's figures of `store_snapshot` (see
        store_snapshot in node/figures.py). Runs on one thread at a time (the event loop)."""
        self._store.snapshot = store_snapshot
        try:
            return generate_latest(self.registry)
        finally:
            self._store.snapshot = {}


class _StoreCollector:
    """Families built from a snapshot of the database, taken just before a scrape."""

    def __init__(self) -> None:
        self.snapshot: dict = {}

    def describe(self):
        return []

    def collect(self):
        s = self.snapshot
        if not s:
            return
        yield _gauge("ncii_log_size", "Entries in this node's log (its latest published checkpoint)",
                     [((), s["log_size"])])
        entries = CounterMetricFamily("ncii_log_entries", "Entries appended to this node's log, by kind and detail "
                                      "(signal, verdict or reason)", labels=["kind", "detail"])
        for (kind, detail), n in sorted(s["log_entries"].items()):
            entries.add_metric([kind, detail], n)
        yield entries
        if "cases" in s:
            yield CounterMetricFamily("ncii_cases_created", "Cases opened (creation completed)",
                                      value=s["cases"]["opened"])
            yield CounterMetricFamily("ncii_cases_withdrawn", "Cases withdrawn by the person",
                                      value=s["cases"]["withdrawn"])
        feedback = CounterMetricFamily("ncii_feedback_received", "Verdicts received from followed logs",
                                       labels=["platform", "verdict"])
        for platform, verdict, n in s["feedback"]:
            feedback.add_metric([platform, verdict], n)
        yield feedback
        logs = s["followed"]
        yield _gauge("ncii_follow_size", "Entries verified of each followed log",
                     [((f["origin"],), f["size"]) for f in logs], ["origin"])
        yield _gauge("ncii_follow_lag_entries", "Entries the followed log announced beyond those verified",
                     [((f["origin"],), f["lag_entries"] or 0) for f in logs], ["origin"])
        yield _gauge("ncii_follow_lag_seconds", "Seconds since a round last confirmed holding the log's latest "
                     "checkpoint", [((f["origin"],), f["lag_seconds"]) for f in logs
                                    if f["lag_seconds"] is not None], ["origin"])
        errors = CounterMetricFamily("ncii_follow_errors", "Failed follower rounds", labels=["origin"])
        for f in logs:
            errors.add_metric([f["origin"]], f["errors_total"])
        yield errors
        yield _gauge("ncii_follow_failing", "Consecutive failed rounds (0: the last round went through)",
                     [((f["origin"],), f["failures"]) for f in logs], ["origin"])
        yield _gauge("ncii_follow_forked", "1 if the followed log forked (evidence kept, nothing more applied)",
                     [((f["origin"],), int(f["forked"])) for f in logs], ["origin"])
        yield _gauge("ncii_follow_held", "Fingerprints of the followed log stored but held out of the match index: "
                     "in a dense cluster it published (until the operator releases it), or beyond its budgets",
                     [((f["origin"], reason), f["held"][reason]) for f in logs for reason in ("cluster", "budget")],
                     ["origin", "reason"])
        yield _gauge("ncii_follow_held_clusters", "Dense clusters of the followed log held until the operator "
                     "releases them (ncii-node status names them)",
                     [((f["origin"],), len(f["held_clusters"])) for f in logs], ["origin"])
        if "index" in s:
            index = s["index"]
            yield _gauge("ncii_index_fingerprints", "Active fingerprints in the match index, by signal",
                         [((signal,), index.get(signal, 0)) for signal in SIGNALS], ["signal"])
            yield _gauge("ncii_index_bytes", "Memory held by the match index's tables (bytes)",
                         [((), index.get("index_bytes", 0))])
        yield _gauge("ncii_build_info", "The running ncii-node version", [((s["version"],), 1)], ["version"])


def _gauge(name: str, documentation: str, samples: list, labels: list[str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels or [])
    for label_values, value in samples:
        family.add_metric(list(label_values), value)
    return family
