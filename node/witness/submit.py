"""The publisher side of C2SP tlog-witness: send each new checkpoint to this log's
witnesses, collect their cosignatures, serve the cosigned checkpoint.

How it hangs together: the sequencer calls `notify(published)` (its `on_publish`
hook) after each publication. A single background task takes the newest checkpoint
(intermediate ones are skipped when publication outpaces witnessing), submits it to
every configured witness at once, verifies each returned cosignature against that
witness's key, and swaps the sequencer's published note for the same note with the
cosignature lines appended, so GET /checkpoint serves the cosigned checkpoint.

Invariants:
- Witnessing never blocks or undoes sequencing: it runs beside it, on copies; a
  witness that is down or refuses just means /checkpoint serves the checkpoint with
  fewer (or no) cosignatures, and the attempt is retried with back-off.
- The note is swapped only if it is still the published one (same size and root),
  and only with lines that verified under the witness's key.
- Per witness, the size it last cosigned is kept (table log_witnesses), so the next
  request carries the right old size and a consistency proof from it; a 409 teaches
  us the witness's size and the request is repeated once at once.
- A witness that could not be reached at all (connection refused or reset, a gateway's
  502/504) is looked at every PROBE_INTERVAL seconds while the submitter backs off: an
  unsigned GET <witness>/add-checkpoint (any other answer, 405 included, means it is
  up). When it answers, the back-off ends and the checkpoint is submitted at once, so
  a witness back from an outage cosigns within about a second, not after up to
  RETRY_MAX (the followers that require its cosignature wait for it). A witness that
  is slow (a time limit) is not probed: the back-off is what spares it.
- Rounds start at most once per `interval` seconds (`[witness] add_checkpoint_interval`,
  declared in /node.json as the rate the witness network asks logs to state): each
  round sends every witness one add-checkpoint request, and one more only after a 409.
  A round that sent nothing (every witness had cosigned that checkpoint already, e.g.
  the one served at start-up) does not count, nor does the round for the checkpoint
  served at start-up (one a crash left uncosigned): a node back from an outage has its
  first new checkpoint cosigned at once, not an interval after its start (followers
  that require the cosignature wait for it; issue 22). That is one request more than
  the rate once per start, which the witnesses' own warning allows (two per interval
  plus three, spec/parts/witness.md §3).
- Each round is logged at DEBUG with its timings (how long the checkpoint waited for
  the rate, how long the witnesses took): `ncii-node -v serve` traces the path from a
  publication to the cosigned checkpoint served.
Consistency proofs are computed from the log's own tiles (the sequencer's tile store:
only tiles of the published size are read, and those never change).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random

import aiohttp

from node.store.witness import LogWitness
from node.stopping import stop_task, wait_event
from node.store.worker import DatabaseWorker
from node.witness.addcheckpoint import SIZE_CONTENT_TYPE, encode_request
from protocol.cosignature import CosignatureVerifier
from protocol.errors import ProtocolError
from protocol.merkle import consistency_proof
from protocol.note import EM_DASH_PREFIX, add_signatures, parse_note
from protocol.tiles import TileNodes

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 64 * 1024
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
#: While a witness is down: seconds between two looks (jittered by ±25 %), and the time limit of one.
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0


class WitnessFailure(Exception):
    def __init__(self, message: str, known_size: int | None = None, down: bool = False):
        super().__init__(message)
        self.known_size = known_size
        self.down = down  # the witness could not be reached at all


async def post_add_checkpoint(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes, str]:
    """POST <url>/add-checkpoint; returns (status, body read up to a bound, content type)."""
    async with session.post(url.rstrip("/") + "/add-checkpoint", data=body,
                            headers={"Content-Type": "text/plain; charset=utf-8"}) as response:
        data = await response.content.read(MAX_REPLY_BYTES + 1)
        if len(data) > MAX_REPLY_BYTES:
            raise WitnessFailure(f"witness reply is larger than {MAX_REPLY_BYTES} bytes")
        return response.status, data, response.headers.get("Content-Type", "")


def unreachable(exc: BaseException) -> WitnessFailure:
    """The failure of a request that got no answer: `down` when the witness could not
    be reached at all (refused, reset), not when it was slow (a time limit)."""
    down = isinstance(exc, (aiohttp.ClientConnectionError, OSError)) and not isinstance(exc, asyncio.TimeoutError)
    return WitnessFailure(f"unreachable: {exc.__class__.__name__} {exc}".strip(), down=down)


async def answers(session: aiohttp.ClientSession, url: str) -> bool:
    """Whether a witness that was down answers again: an unsigned GET <url>/add-checkpoint
    (any answer but a gateway's 502/504, 405 included, means it is up)."""
    try:
        async with session.get(url.rstrip("/") + "/add-checkpoint", allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as response:
            return response.status not in (502, 504)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


def cosignature_lines(reply: bytes, checkpoint_text: str, witness: CosignatureVerifier) -> list[str]:
    """The lines of a 200 reply that are valid cosignatures by `witness` (others ignored)."""
    try:
        text = reply.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessFailure("witness reply is not UTF-8 text") from None
    if not text.endswith("\n"):
        raise WitnessFailure("witness reply does not end with a newline")
    good = []
    for line in text[:-1].split("\n"):
        if not line.startswith(EM_DASH_PREFIX):
            raise WitnessFailure("witness reply holds a line that is not a signature line")
        try:
            witness.verify_line(checkpoint_text, line)
        except ProtocolError:
            continue  # another key of the witness, or garbage: ignored (C2SP tlog-witness)
        good.append(line)
    if not good:
        raise WitnessFailure("witness reply holds no valid cosignature from its configured key")
    return good


class WitnessSubmitter:
    """One per serving node; started and stopped by node/web/witness_routes.py."""

    def __init__(self, sequencer, db_path, *, timeout: float = 10.0, retry_max: float = RETRY_MAX,
                 interval: float = 1.0):
        self.sequencer = sequencer
        self.db_path = db_path
        self.timeout = timeout
        self.retry_max = max(retry_max, interval)
        self.interval = interval
        self._round_started = None   # loop time the last round began (rate limit)
        self.worker = DatabaseWorker(db_path, name="witness-submit")
        self._session: aiohttp.ClientSession | None = None
        self._latest = None          # newest Published (plain note) not yet fully witnessed
        self._latest_at = 0.0        # loop time it was published (the trace)
        self._at_start = None        # the checkpoint served at start-up (its round does not count)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.rounds = 0              # completed rounds (tests wait on this)
        self.posts = 0               # add-checkpoint requests sent
        self.last_cosignatures = 0   # cosignatures on the published checkpoint after the last round
        self.down: set[str] = set()  # URLs of witnesses that could not be reached in the last round
        self.probes = 0              # looks at a down witness (tests read it)
        self.retry_delay: float | None = None  # the current back-off, seconds (None: waiting for news)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self.sequencer.on_publish.append(self.notify)
        if self.sequencer.published is not None:
            self._at_start = self.sequencer.published
            self.notify(self.sequencer.published)
        self._task = asyncio.create_task(self._run(), name="witness-submitter")

    async def stop(self) -> None:
        if self.notify in self.sequencer.on_publish:
            self.sequencer.on_publish.remove(self.notify)
        # Bounded, and cancelled again if need be: a stop a few loop iterations after
        # start() once found _run just woken by start()'s notify, and 3.11's wait_for
        # dropped the cancellation (node/stopping.py).
        await stop_task(self._task, "the witness submitter")
        if self._session is not None:
            await self._session.close()
        await self.worker.close()

    def notify(self, published) -> None:
        """The sequencer's on_publish hook: remember the newest checkpoint, wake up."""
        self._latest = published
        self._latest_at = asyncio.get_running_loop().time()
        self._wake.set()

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            self.retry_delay = delay
            await self._wait(delay)
            self._wake.clear()
            if self._latest is None:
                delay = None
                continue
            # The declared rate: wait out the interval since the last round began, then
            # take the newest checkpoint (those published meanwhile are skipped).
            loop = asyncio.get_running_loop()
            if self._round_started is not None:
                await asyncio.sleep(self._round_started + self.interval - loop.time())
            began = loop.time()
            previous_start, self._round_started = self._round_started, began
            self._wake.clear()
            published, published_at = self._latest, self._latest_at
            posts = self.posts
            try:
                complete = await self.submit_round(published)
            except Exception:
                log.exception("witness submission: unexpected error (will retry)")
                complete = False
            if self.posts == posts or published is self._at_start:
                # Nothing was sent (every witness had cosigned this checkpoint already, as
                # after a restart), or only the checkpoint served at start-up: the next
                # round need not wait for this one. A node back from an outage then has
                # its first new checkpoint cosigned at once, not an interval after its start.
                self._round_started = previous_start
            log.debug("witness submission: checkpoint %d published %.0f ms before its round, which took %.0f ms "
                      "(%d request(s)): %d cosignature(s)", published.size,
                      (began - published_at) * 1000, (loop.time() - began) * 1000, self.posts - posts,
                      self.last_cosignatures)
            self.rounds += 1
            if complete:
                delay = None  # sleep until the next publication
            else:
                delay = RETRY_FIRST if delay is None else min(self.retry_max, delay * 2)
                delay = max(self.interval, delay * random.uniform(0.8, 1.2))

    async def _wait(self, delay: float | None) -> None:
        """Until a publication wakes us, `delay` seconds pass (the retry), or a witness
        that was down answers a probe."""
        loop = asyncio.get_running_loop()
        deadline = None if delay is None else loop.time() + delay
        while True:
            step = None if deadline is None else deadline - loop.time()
            if self.down and step is not None:
                step = min(step, PROBE_INTERVAL * random.uniform(0.75, 1.25))
            if step is not None and step <= 0:
                return
            if await wait_event(self._wake, step):
                return
            if deadline is not None and loop.time() >= deadline:
                return  # retry time
            if self.down and await self._one_is_back():
                return

    async def _one_is_back(self) -> bool:
        for url in sorted(self.down):
            self.probes += 1
            if not await answers(self._session, url):
                continue
            log.info("witness %s answers again; submitting now", url)
            self.down.discard(url)
            return True
        return False

    async def submit_round(self, published) -> bool:
        """Submit one checkpoint to every witness; attach what came back. True when
        every witness has cosigned it (nothing to retry)."""
        witnesses = await self.worker.witness.list_log_witnesses()
        if not witnesses:
            self.last_cosignatures = 0
            return True
        checkpoint_text = parse_note(published.note).text
        results = await asyncio.gather(*(self._submit_one(w, published, checkpoint_text) for w in witnesses))
        lines = [line for result in results if result for line in result]
        self.last_cosignatures = sum(1 for r in results if r)
        current = self.sequencer.published
        if lines and current is not None and current.size == published.size \
                and current.root_hash == published.root_hash:
            # The note of this size as served now (it may carry the log's own publication
            # cosignature, node/acks/publisher.py) plus every cosignature for it (a line of
            # a witness that cosigned again replaces its older line).
            self.sequencer.published = dataclasses.replace(current, note=add_signatures(current.note, lines))
        k = await self.worker.witness.get_log_policy()
        if k is not None and self.last_cosignatures < k:
            log.warning("witness submission: checkpoint %d has %d cosignature(s), policy wants %d; retrying",
                        published.size, self.last_cosignatures, k)
        return all(results)

    async def _submit_one(self, witness: LogWitness, published, checkpoint_text: str) -> list[str] | None:
        try:
            verifier = CosignatureVerifier.from_vkey(witness.vkey)
        except ProtocolError as exc:
            await self.worker.witness.record_witness_result(witness.vkey, error=str(exc))
            return None
        old = witness.last_size or 0
        if witness.last_size == published.size and witness.last_line:
            try:
                verifier.verify_line(checkpoint_text, witness.last_line)
                return [witness.last_line]  # already cosigned this very checkpoint
            except ProtocolError:
                pass
        for attempt in range(2):
            try:
                lines = await self._post(witness, verifier, old, published, checkpoint_text)
            except WitnessFailure as exc:
                if exc.known_size is not None and attempt == 0 and exc.known_size <= published.size:
                    old = exc.known_size  # learned the witness's size: ask again at once
                    await self.worker.witness.record_witness_result(witness.vkey, error=str(exc),
                                                                     known_size=exc.known_size)
                    continue
                log.warning("witness %s (%s): %s", witness.name or witness.vkey, witness.url, exc)
                await self.worker.witness.record_witness_result(witness.vkey, error=str(exc),
                                                                 known_size=exc.known_size)
                if exc.down:
                    self.down.add(witness.url)
                else:
                    self.down.discard(witness.url)
                return None
            self.down.discard(witness.url)
            await self.worker.witness.record_witness_result(witness.vkey, size=published.size, line=lines[0])
            return lines
        return None

    async def _post(self, witness, verifier, old: int, published, checkpoint_text: str) -> list[str]:
        if old > published.size:
            raise WitnessFailure(f"the witness has cosigned size {old}, larger than our published "
                                 f"{published.size}: this log was rolled back, or another log uses its origin")
        proof = []
        if 0 < old < published.size:
            proof = await self.worker.run(self._proof, old, published.size)
        body = encode_request(old, proof, published.note)
        self.posts += 1
        try:
            status, reply, content_type = await post_add_checkpoint(self._session, witness.url, body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise unreachable(exc) from None
        if status == 200:
            return cosignature_lines(reply, checkpoint_text, verifier)
        if status == 409 and content_type.split(";")[0].strip() == SIZE_CONTENT_TYPE:
            text = reply.decode("ascii", "replace")
            if text.endswith("\n") and text[:-1].isdigit() and len(text) < 22:
                raise WitnessFailure(f"witness holds size {int(text)}, we sent old size {old}",
                                     known_size=int(text))
        raise WitnessFailure(f"HTTP {status}: {reply[:300].decode('utf-8', 'replace').strip()}",
                             down=status in (502, 504))

    def _proof(self, old: int, size: int) -> list[bytes]:
        nodes = TileNodes(size, self.sequencer.tiles)
        return consistency_proof(old, size, nodes.node_at)
