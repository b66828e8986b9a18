"""The composition root: the one place that builds a running node from its data directory.

    node = Node(datadir)      # nothing opened yet; node.matcher exists on a platform
    await node.start()        # every part, in the order below
    ...                       # node.sequencer, node.cases, node.matcher, node.witness, ...
    await node.stop()         # every part, in the reverse order (idempotent)

`ncii-node serve` (node/web/server.py), the command line and the tests all build
nodes this way; the web layer (node/web/app.py) receives the node and only translates
HTTP. Start order (each part may rely on the parts started before it):

   1. lease       which process sequences the log (node/log/lease.py): on SQLite the
                  data directory's flock (one process serves DIR, and sequences); on
                  PostgreSQL the advisory lock and its fencing epoch, which passes to
                  another `serve` process of the same database when this one dies
   2. database    opened and migrated; `db` is a connection for short reads on the
                  event loop (a reader lookup, a feedback's leaf hash)
   3. keys        the log's and the request key's verifier keys; the admin, match
                  (platform) and metrics tokens, created when missing; when reads
                  are checked (unless [http] public_read, and always for the push
                  channel), the replay cache of signed reads and its journal
                  (node/replaycache.py)
   4. sequencer   crash recovery (stored entries republished), then the pending pool
                  (node/log/sequencer.py), once this process holds the lease (at once
                  on SQLite); `feedback` publishes verdicts through it
   5. acknowledger  our checkpoints served with our publication cosignature; each
                  applied tree of a followed log acknowledged in our log (node/acks/)
   6. cases       helpline: the case service; repairs cases a crash interrupted
   7. follower    every node: one job per followed log; its listeners are the
                  acknowledger, then a platform's matcher (withdrawals before each
                  round commits, additions after, then the acknowledgement). Its
                  rounds begin once the node serves (`serving`, set by
                  node/web/server.py): a node back from an outage listens and
                  publishes first, and catches up on the logs it follows after
   8. gossip      every node: one job per peer whose view is compared with ours;
                  then the federation list, when the node follows one
                  (node/federation/service.py): what it applies at once, the
                  follower and the gossip re-read; and, when the node publishes
                  the list's log, its witnesses asked again for the cosignatures
                  its checkpoint lacks (node/federation/cosigning.py)
   9. matcher     platform: the index is built from the database in the background
                  (meanwhile matching answers "not ready"); then the disputed-match
                  feedback that a suppression left pending is published, and every
                  REVIEW_INTERVAL seconds the fingerprints held by a log's hourly and
                  daily budgets that the budgets now allow go in (node/matcher/holds.py)
  10. figures     the figures' database worker, the sequencer's batch times, the
                  match counts flushed from memory every FLUSH_INTERVAL seconds
  11. witness     every node: the witness (active once it has logs to cosign) and
                  the submitter of our checkpoints to our witnesses

Stopping runs the same list backwards: the sequencer stops after everything that
appends through it, and publishes what is pending before it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

import psutil

from node.acks.publisher import Acknowledger
from node import readaccess
from node.cases.proxies import ClientAddresses
from node.cases.service import CaseService
from node.datadir import DataDir
from node.errors import Unavailable
from node.feedback import FeedbackPublisher
from node.federation.cosigning import ListCosigner
from node.federation.service import FederationService
from node.federation.subscription import Own
from node.figures import Figures
from node.follow.forks import EVIDENCE_DIR
from node.follow.gossip import GossipService
from node.follow.listener import Listeners
from node.follow.push import advertisement as push_advertisement
from node.follow.scheduler import FollowService
from node.log.lease import lease_for
from node.log.sequencer import Sequencer
from node.matcher.holds import Budget
from node.matcher.service import Matcher
from node.matcher.suppress import Suppressor
from node.metrics import NodeMetrics
from node.replaycache import REPLAY_JOURNAL, ReplayCache
from node.stopping import STOP_TIMEOUT, bounded, stop_task
from node.store import open_db
from node.store.replay import DatabaseJournals
from node.store.worker import DatabaseWorker
from node.witness.service import WitnessService
from node.witness.submit import WitnessSubmitter
from protocol.note import add_signatures

log = logging.getLogger(__name__)

#: Seconds between looks at which held fingerprints a log's budgets now allow (platform).
REVIEW_INTERVAL = 60.0
#: Seconds the health check gives the database to answer before it says unavailable.
HEALTH_TIMEOUT = 2.0
#: Seconds the health check's look at the database is reused for.
HEALTH_REUSE = 1.0
#: Seconds the sequencer's stop may take (it publishes what is pending first).
SEQUENCER_STOP_TIMEOUT = 2 * STOP_TIMEOUT
#: Seconds the parts of the sequencing process (follower, gossip, ...) may take to stop.
LEADING_STOP_TIMEOUT = 3 * STOP_TIMEOUT


class Node:
    """One node: its parts, and the order in which they start and stop."""

    def __init__(self, datadir: DataDir):
        self.datadir = datadir
        self.config = datadir.config
        self.origin = self.config.node.origin
        self.role = self.config.node.role
        self.metrics = NodeMetrics()     # measured in memory (node/metrics.py)
        #: [http] public_names, normalized: with the address a connection arrived on
        #: (node/web/app.py own_names), the names a signed read must be sent to.
        self.public_names = frozenset(readaccess.normalize_authority(n) for n in self.config.http.public_names)
        #: Who a request comes from, for the limits that count per client (body pools,
        #: case creations, failed PINs): the peer, or X-Forwarded-For from trusted proxies.
        self.clients = ClientAddresses(self.config.http.trusted_proxies)
        #: Signed reads accepted recently, each refused a second time. None when no read
        #: is checked: a public_read node without the push channel (which is for
        #: registered readers even on a public_read node: node/web/push_routes.py).
        checks_reads = not self.config.http.public_read or self.config.push.enabled
        self.replay_cache = ReplayCache() if checks_reads else None
        # The matcher exists before anything starts: the follower's first round may
        # reach it before its index is built (it queues what it hears meanwhile).
        match = self.config.match
        self.matcher = Matcher(pending_load=True,
                               budget=Budget(match.max_fingerprints_per_log, match.max_per_hour_per_log,
                                             match.max_per_day_per_log),
                               cluster_size=match.cluster_size,
                               cluster_keep=match.cluster_keep) if self.role == "platform" else None
        self.lease = lease_for(datadir)
        self.db = None
        self.log_vkey = self.request_vkey = ""
        self.admin_token = self.match_token = self.metrics_token = ""
        self.sequencer: Sequencer | None = None
        self.feedback: FeedbackPublisher | None = None
        self.acknowledger: Acknowledger | None = None
        self.cases: CaseService | None = None
        self.follower: FollowService | None = None
        self.gossip: GossipService | None = None
        self.federation: FederationService | None = None
        self.list_cosigner: ListCosigner | None = None
        self.suppressor: Suppressor | None = None
        self.figures: Figures | None = None
        self.witness: WitnessService | None = None
        self.submitter: WitnessSubmitter | None = None
        self._health_db: DatabaseWorker | None = None
        self._replica = None  # PostgreSQL: keeps this process's matcher up to date
        self._health_look: tuple[float, asyncio.Future] | None = None  # (when, the look)
        self._stack: contextlib.AsyncExitStack | None = None
        #: Set by whoever serves the node once it listens (node/web/server.py): the
        #: follower's rounds wait for it.
        self.serving = asyncio.Event()

    @property
    def evidence_dir(self):
        """Where fork evidence files go (DIR/evidence)."""
        return self.datadir.root / EVIDENCE_DIR

    async def start(self) -> Node:
        stack = contextlib.AsyncExitStack()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        datadir, config = self.datadir, self.config

        # 1. lease
        await self.lease.start()
        stack.push_async_callback(bounded, self.lease.stop, "the sequencer lease")

        # 2. database
        self.db = open_db(datadir.db_path)
        if datadir.uses_postgres:
            self.db.reconnects = True  # after the server went away (node/store/pg.py)
        log.info("database: %s", f"PostgreSQL {datadir.db_path} (tiles and replay journal in it too)"
                 if datadir.uses_postgres else f"SQLite {datadir.db_path}")
        stack.callback(self.db.close)
        self._health_db = DatabaseWorker(datadir.db_path, name="health")  # its own: never queued behind work
        stack.push_async_callback(bounded, self._health_db.close, "the health check's database worker")

        # 3. keys
        self.log_vkey = datadir.load_log_signer().verifier_key()
        request_key = datadir.load_request_signer()
        self.request_vkey = request_key.verifier_key()
        request_signer = request_key.signer()
        self.admin_token = datadir.admin_token()
        self.metrics_token = datadir.metrics_token(create=True)
        if self.role == "platform":
            self.match_token = datadir.match_token(create=True)
        if self.replay_cache is not None:
            journal = DatabaseJournals(datadir.db_path) if datadir.uses_postgres else datadir.root / REPLAY_JOURNAL
            log.info("read access: %s", self.replay_cache.open_journal(journal, time.time(),
                                                                     readaccess.MAX_CLOCK_SKEW))
            stack.callback(self.replay_cache.close)

        # 4. sequencer
        self.sequencer = Sequencer(datadir, lease=self.lease)
        stack.push_async_callback(bounded, self.sequencer.stop, "the sequencer", SEQUENCER_STOP_TIMEOUT)
        await self.sequencer.start()
        self.feedback = FeedbackPublisher(self.db, self.sequencer, self.origin)

        # 5. acknowledger, 7. follower, 8. gossip: one process of the node runs them (the
        # sequencer: SQLite's only process), in this order; on PostgreSQL they start when
        # this process takes the lease and stop when it loses it (_lead).
        if self.sequencer.shared:
            self.acknowledger = Acknowledger(datadir, config, self.sequencer, self.db)
            self.acknowledger.signer = datadir.load_ack_signer(create=True)  # node.json's key, in every process
            self.sequencer.as_served = self._as_served
        else:
            await self._start_leading(stack, request_signer, cases_first=True)

        # 6. cases (if not started between 5 and 7 above)
        if self.role == "helpline" and self.cases is None:
            self.cases = CaseService(datadir, config, self.sequencer, self.log_vkey, self.clients)
            await self.cases.start()
            stack.push_async_callback(bounded, self.cases.stop, "the case service")

        # 9. matcher
        if self.matcher is not None:
            self.suppressor = Suppressor(self.db, self.matcher, self.feedback)
            if self.sequencer.shared:
                from node.matcher.replica import MatchReplica
                self._replica = MatchReplica(self.matcher, datadir.db_path)
                self.matcher.decides = self._leads  # only the sequencing process decides holds
            build = asyncio.create_task(self._build_index(), name="matcher-build")
            stack.push_async_callback(bounded, lambda: self._stop_matcher(build), "the matcher")

        # 10. figures
        self.figures = Figures(DatabaseWorker(datadir.db_path, name="figures"), self.metrics, config)
        self.sequencer.on_batch.append(self.metrics.observe_batch)
        stack.push_async_callback(bounded, self.figures.stop, "the figures")
        await self.figures.start()

        # 11. witness
        self.witness = WitnessService(datadir, config, DatabaseWorker(datadir.db_path, name="witness"))
        stack.push_async_callback(bounded, self.witness.stop, "the witness")
        await self.witness.start()
        self.submitter = WitnessSubmitter(self.sequencer, datadir.db_path,
                                          interval=config.witness.add_checkpoint_interval)
        if not self.sequencer.shared:
            stack.push_async_callback(bounded, self.submitter.stop, "the witness submitter")
            await self.submitter.start()
        else:
            leading = asyncio.create_task(self._lead(request_signer), name="leading")
            stack.push_async_callback(stop_task, leading, "the sequencing process's parts", LEADING_STOP_TIMEOUT)

    async def _start_leading(self, stack: contextlib.AsyncExitStack, request_signer, *,
                             cases_first: bool = False) -> None:
        """The parts one process of the node runs: 5. acknowledger, (6. cases, SQLite's
        order), 7. follower, 8. gossip; and, on PostgreSQL, the witness submitter."""
        datadir, config = self.datadir, self.config
        self.acknowledger = Acknowledger(datadir, config, self.sequencer, self.db)
        stack.push_async_callback(bounded, self.acknowledger.stop, "the acknowledger")
        await self.acknowledger.start()
        if cases_first and self.role == "helpline":
            self.cases = CaseService(datadir, config, self.sequencer, self.log_vkey, self.clients)
            await self.cases.start()
            stack.push_async_callback(bounded, self.cases.stop, "the case service")
        listeners = [self.acknowledger] + ([self.matcher] if self.matcher is not None else [])
        if self.matcher is not None and self.sequencer.shared:  # the other processes' matchers
            from node.matcher.replica import MatchAnnouncer
            announcer = MatchAnnouncer(datadir.db_path)
            stack.callback(announcer.close)
            listeners.append(announcer)
        self.follower = FollowService(datadir.db_path, signer=request_signer, listener=Listeners(listeners),
                                      own_origin=self.origin, evidence_dir=self.evidence_dir,
                                      start_after=self.serving)
        stack.push_async_callback(bounded, self.follower.stop, "the follower")
        await self.follower.start()
        self.gossip = GossipService(datadir.db_path, signer=request_signer, evidence_dir=self.evidence_dir)
        stack.push_async_callback(bounded, self.gossip.stop, "gossip")
        await self.gossip.start()
        self.federation = FederationService(datadir.db_path, Own(self.role, self.origin), self.reload_followed,
                                            self.evidence_dir)
        stack.push_async_callback(bounded, self.federation.stop, "the federation list service")
        await self.federation.start()
        self.list_cosigner = ListCosigner(datadir.root, datadir.db_path)
        stack.push_async_callback(bounded, self.list_cosigner.stop, "the list log's cosigner")
        await self.list_cosigner.start()

    async def _lead(self, request_signer) -> None:
        """PostgreSQL: while this process holds the lease, run what one process of the
        node runs (the follower writes the follow state, the acknowledger appends what
        it acknowledges, the submitter asks our witnesses: two of each would repeat
        every one); stop them when the lease is lost, and wait for it again."""
        while True:
            await self.lease.acquired()
            lost = asyncio.Event()
            on_lost = lost.set
            self.lease.on_lost.append(on_lost)
            if not self.lease.held:  # lost again before we listened
                self.lease.on_lost.remove(on_lost)
                continue
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(self.lease.on_lost.remove, on_lost)
                try:
                    await self._start_leading(stack, request_signer)
                    self.submitter = WitnessSubmitter(self.sequencer, self.datadir.db_path,
                                                      interval=self.config.witness.add_checkpoint_interval)
                    stack.push_async_callback(bounded, self.submitter.stop, "the witness submitter")
                    await self.submitter.start()
                    log.info("this process follows, gossips and acknowledges for the node (it sequences)")
                    await lost.wait()
                except Exception:  # noqa: BLE001 -- logged; tried again with the next lease
                    log.exception("starting the sequencing process's parts failed")
                    await lost.wait()
            self.follower = self.gossip = self.federation = self.list_cosigner = None

    async def reload_followed(self) -> list[str]:
        """The follower and the gossip re-read their lists now (`ncii-node follow add`
        asks the running node to); returns the followed origins. Raises Unavailable
        while the node starts or stops."""
        if self._stack is not None and self.sequencer.shared and not self.lease.held:
            # Another process follows: it re-reads the list within its reload interval.
            return [followed.origin for followed in await asyncio.to_thread(self._followed_now)]
        if self._stack is None or self.follower is None or self.gossip is None:
            raise Unavailable("the node is starting or stopping; try again")
        following = await self.follower.reload()
        await self.gossip.reload()
        return following

    def _followed_now(self):
        db = open_db(self.datadir.db_path)
        try:
            return db.follow.list_logs()
        finally:
            db.close()

    async def _build_index(self) -> None:
        try:
            if self.sequencer.shared:  # PostgreSQL: a replica, kept up to date (node/matcher/replica.py)
                sizes = await self._replica.sizes()
            await asyncio.to_thread(self.matcher.load, self.datadir.db_path)
            if self.sequencer.shared:
                await self._replica.start(sizes)
        except Exception:
            if not self.matcher.load_cancelled:
                log.exception("matcher: building the index failed; matching is unavailable")
            return
        if self._leads():
            published = await self.suppressor.publish_pending()
            if published:
                log.info("matcher: published %d pending disputed-false-match feedback entries", published)
        while True:  # the hourly and daily budgets let held fingerprints in as time passes
            await asyncio.sleep(REVIEW_INTERVAL)
            if not self._leads():
                continue
            try:
                await asyncio.to_thread(self.matcher.review_holds)
            except Exception:  # noqa: BLE001 -- logged; tried again in a minute
                log.exception("matcher: indexing fingerprints the budgets now allow failed")

    async def _stop_matcher(self, build: asyncio.Task) -> None:
        self.matcher.cancel_load()
        build.cancel()
        await asyncio.gather(build, return_exceptions=True)
        if self._replica is not None:
            await self._replica.stop()
        self.matcher.close()

    def _as_served(self, db, published):
        """(PostgreSQL, a process that does not sequence; the sequencer's worker thread)
        The checkpoint with what the sequencing process adds to it: our publication
        cosignature (the same line: deterministic, same key) and every cosignature our
        witnesses returned for this size (stored by the witness submitter)."""
        note = published.note
        if self.acknowledger.enabled and published.size:
            stored = db.log.checkpoint_at(published.size)
            if stored is not None:
                note = self.acknowledger.cosigned(note, published.note, stored.published_at)
        lines = [w.last_line for w in db.witness.list_log_witnesses()
                 if w.last_size == published.size and w.last_line]
        if lines:
            note = add_signatures(note, lines)
        return dataclasses.replace(published, note=note)

    def _leads(self) -> bool:
        """Whether this process runs what one process of the node runs (SQLite: always)."""
        return not self.sequencer.shared or self.lease.held

    # ------------------------------------------------------------------ what the node says of itself

    async def node_json(self) -> dict:
        """GET /node.json: who this node is, its push channel, and what it says about
        witnessing."""
        config = self.config
        document = {
            "origin": self.origin,
            "role": self.role,
            "display_name": config.node.display_name,
            "contact": config.node.contact,
            "verifier_key": self.log_vkey,
            "request_key": self.request_vkey,
            "public_read": config.http.public_read,
            "acknowledgement_key": self.acknowledger.vkey if self.acknowledger.signer else None,
            "push": push_advertisement(config),
        }
        document.update(await self.witness.node_json())
        return document

    async def health(self) -> tuple[bool, dict]:
        """GET /healthz: whether this process can serve now -- started, its database
        answering within HEALTH_TIMEOUT, a published checkpoint to serve, and on a
        platform its match index built -- and whether it sequences. A load balancer
        routes only to a process that says ok (deploy/nginx/ncii-node-multi.conf)."""
        checks = {"started": self._stack is not None and self._health_db is not None}
        if checks["started"]:
            checks["database"] = await self._database_answers()
            checks["log"] = self.sequencer is not None and self.sequencer.published is not None
            if self.matcher is not None:
                checks["match_index"] = self.matcher.ready
        ok = all(checks.values())
        return ok, {"status": "ok" if ok else "unavailable", "checks": checks, **self.lease.describe()}

    async def _database_answers(self) -> bool:
        """One look at the database at a time, its answer reused for HEALTH_REUSE seconds:
        a flood of GET /healthz (it is public) costs the database one query a second
        and cannot make the process look unhealthy by queueing looks behind each other."""
        loop = asyncio.get_running_loop()
        if self._health_look is None or loop.time() - self._health_look[0] > HEALTH_REUSE:
            self._health_look = (loop.time(), asyncio.ensure_future(self._look_at_database()))
        return await asyncio.shield(self._health_look[1])

    async def _look_at_database(self) -> bool:
        try:
            await asyncio.wait_for(self._health_db.log.latest_checkpoint(), HEALTH_TIMEOUT)
            return True
        except Exception:  # noqa: BLE001 -- any failure or a timeout: not reachable
            return False

    def live_figures(self) -> dict:
        """What only the running process knows, for the console and /metrics."""
        live = {"rss_bytes": psutil.Process().memory_info().rss}
        if self.sequencer is not None and self.sequencer.published is not None:
            live["log_size"] = self.sequencer.published.size
        if self.matcher is not None:
            live["matcher"] = self.matcher.stats()
            live["latency"] = self.metrics.latency_percentiles()
        return live
