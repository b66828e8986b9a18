"""The list log's checkpoint gets every witness's cosignature, even when a witness was
down at `federation publish` (spec/parts/joining.md §3.3).

`federation publish` asks each witness this node uses (`ncii-node witness use`) once.
A follower that requires a witness quorum on the list refuses a checkpoint its
witnesses did not cosign: a new member could not join, a removed one would stay, until
the next publication. So the running node that serves the list log asks again:

- LOOK   every CHECK seconds (every TICK while a witness is missing) it reads the
         served checkpoint (DIR/federation-log/checkpoint, one small file) and, when
         its bytes changed, which witnesses' valid cosignatures it lacks. Nothing
         else happens while none is missing, and none when the node publishes no list.
- ASK    a witness it lacks is asked at once when the checkpoint is new to this
         loop, then again after RETRY_FIRST seconds, doubling up to RETRY_MAX
         (jittered by ±20 %): a witness that refuses or answers wrongly is not
         hammered. A witness that could not be reached at all (connection refused,
         a gateway's 502/504) is also looked at every PROBE_INTERVAL seconds with an
         unsigned GET (node/witness/submit.py `answers`): a witness back from an
         outage is asked within about a second, not after the back-off. Asking is
         publish.py's `ask_witness` (the one client of the list log's witnesses):
         only lines that verify under the witness's key over this very checkpoint
         come back; garbage, another key's line or a cosignature of another
         checkpoint never reach the served file.
- WRITE  the lines are added to the served checkpoint if its text is still the one
         cosigned (publish.py `add_cosignatures`: the publisher's lock, not waited
         for; an atomic rename of the same body with more signature lines): a reader
         never sees a torn file or a checkpoint that goes backwards.
- TELL   one WARNING when a witness starts failing (not one per attempt: an outage
         of weeks across several publications is one WARNING), one INFO when it has
         cosigned; `ncii-node status` lists the witnesses the served checkpoint lacks
         (`published_report`).

One process runs this: the one that follows and gossips for the node (node/runtime.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from node.federation.publish import add_cosignatures, ask_witness, log_store, published_checkpoint
from node.stopping import stop_task
from node.store.worker import DatabaseWorker
from node.witness.submit import PROBE_INTERVAL, answers
from protocol.checkpoint import Checkpoint
from protocol.cosignature import CosignatureVerifier
from protocol.errors import ProtocolError
from protocol.note import Note, parse_note

log = logging.getLogger(__name__)

#: Seconds between two looks at the served checkpoint while it lacks no witness, and
#: while one is missing (the granularity of the back-off and of the probes).
CHECK = 2.0
TICK = 0.5
#: The back-off of a witness that refuses or answers wrongly, seconds: the first retry,
#: doubling up to the bound (the default interval at which followers fetch the list).
RETRY_FIRST = 1.0
RETRY_MAX = 300.0
#: A witness's time limit for one add-checkpoint request, seconds.
ASK_TIMEOUT = 10.0


def has_cosigned(note: Note, vkey: str) -> bool:
    """Whether the witness `vkey` validly cosigned the note (C2SP tlog-cosignature)."""
    try:
        CosignatureVerifier.from_vkey(vkey).verify(note)
    except ProtocolError:
        return False
    return True


def _who(witnesses) -> list[tuple[str, str, str]]:
    return [(w.vkey, w.url, w.name) for w in witnesses]


@dataclass
class _Missing:
    """A witness whose cosignature the served checkpoint lacks."""

    who: str
    due: float                   # loop time of the next request
    delay: float = RETRY_FIRST   # the back-off after the next failure
    down: bool = False           # could not be reached: probed meanwhile
    next_probe: float = 0.0
    attempts: int = 0            # failed requests in this outage
    since: float = field(default_factory=time.time)
    problem: str = ""
    warned: bool = False


class ListCosigner:
    """One per node that serves a list log; started and stopped by node/runtime.py."""

    def __init__(self, root: Path, db_path, *, retry_first: float = RETRY_FIRST, retry_max: float = RETRY_MAX):
        self.root = Path(root)
        self.store = log_store(self.root)
        self.worker = DatabaseWorker(db_path, name="list-cosigner")
        self.retry_first, self.retry_max = retry_first, max(retry_first, retry_max)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._note: bytes | None = None   # the served checkpoint last looked at
        self._text: str | None = None     # its text: a new one is asked for at once
        self._size = 0
        self._unreadable: bytes | None = None
        self._witnesses: list = []
        self._witnesses_at = float("-inf")
        self.missing: dict[str, _Missing] = {}  # by witness vkey
        self.requests = 0  # add-checkpoint requests sent (tests and the figures read it)
        self.probes = 0    # looks at a witness that was down
        self.written = 0   # times the served checkpoint was replaced by a cosigned one

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT))
        self._task = asyncio.create_task(self._run(), name="list-cosigner")

    async def stop(self) -> None:
        await stop_task(self._task, "the list log's cosigner")
        if self._session is not None:
            await self._session.close()
        await self.worker.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:  # noqa: BLE001 -- logged; looked at again later
                log.exception("federation list: asking the witnesses to cosign failed")
            await asyncio.sleep(TICK if self.missing else CHECK)

    async def step(self) -> None:
        """Look at the served checkpoint; ask the witnesses it lacks that are due."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        note = published_checkpoint(self.store)
        if note is None:
            self._note = self._text = None
            self.missing.clear()
            return
        if now - self._witnesses_at >= CHECK:
            witnesses = await self.worker.witness.list_log_witnesses()
            if _who(witnesses) != _who(self._witnesses):  # (not their own log's results, which change)
                self._witnesses, self._note = witnesses, None
            self._witnesses_at = now
        if note != self._note:
            try:
                self._look(note, now)
            except ProtocolError as exc:  # said once per such file, not every look
                if note != self._unreadable:
                    log.error("federation list: the served checkpoint is not a signed checkpoint (%s); no witness "
                              "is asked until `federation publish` writes a good one", exc)
                self._unreadable, self._note = note, None
                self.missing.clear()
                return
        due = [w for w in self._witnesses if w.vkey in self.missing and await self._is_due(w, now)]
        if not due:
            return
        size = self._size
        asked = await asyncio.gather(*(ask_witness(self._session, w, note, size - 1, self.store) for w in due))
        self.requests += len(asked)
        lines = [line for answer in asked for line in answer.lines]
        served = await self.worker.run(add_cosignatures, self.root, self._text, lines) if lines else None
        now = loop.time()
        for answer in asked:
            missing = self.missing.get(answer.witness.vkey)
            if missing is None:
                continue
            if answer.lines and served is not None:
                log.info("federation list: the witness %s cosigned the list's checkpoint %d%s", missing.who, size,
                         f" (after {missing.attempts} failed request(s) since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(missing.since))})"
                         if missing.attempts else "")
                del self.missing[answer.witness.vkey]
            elif answer.lines:
                missing.due = now  # another checkpoint is served, or a publisher is at work: look again
            else:
                self._failed(missing, answer, size, now)
        if served is not None:
            self.written += 1
            self._note = None  # look at what is served now

    def _look(self, note: bytes, now: float) -> None:
        """Which witnesses the checkpoint lacks; a new checkpoint is asked for at once."""
        parsed = parse_note(note)
        size = Checkpoint.parse(parsed.text).size
        new = parsed.text != self._text
        self._note, self._text, self._size = note, parsed.text, size
        lacking = {w.vkey: w for w in self._witnesses if not has_cosigned(parsed, w.vkey)}
        for vkey in list(self.missing):
            if vkey not in lacking:  # cosigned (by `federation publish`), or no longer used
                gone = self.missing.pop(vkey)
                if gone.warned and any(w.vkey == vkey for w in self._witnesses):
                    log.info("federation list: the witness %s has cosigned the list's checkpoint %d", gone.who, size)
        for vkey, witness in lacking.items():
            missing = self.missing.setdefault(vkey, _Missing(witness.name or witness.vkey, now))
            if new:
                missing.due, missing.delay = now, self.retry_first

    async def _is_due(self, witness, now: float) -> bool:
        missing = self.missing[witness.vkey]
        if now >= missing.due:
            return True
        if not missing.down or now < missing.next_probe:
            return False
        missing.next_probe = now + PROBE_INTERVAL * random.uniform(0.75, 1.25)
        self.probes += 1
        return await answers(self._session, witness.url)

    def _failed(self, missing: _Missing, answer, size: int, now: float) -> None:
        missing.attempts += 1
        missing.problem, missing.down = answer.problem, answer.down
        missing.due = now + missing.delay * random.uniform(0.8, 1.2)
        missing.next_probe = now + PROBE_INTERVAL * random.uniform(0.75, 1.25)
        missing.delay = min(self.retry_max, missing.delay * 2)
        if not missing.warned:
            missing.warned = True
            log.warning("federation list: the witness %s has not cosigned the list's checkpoint %d: %s; followers "
                        "that require its cosignature refuse this version until it does. Asked again in the "
                        "background (back-off up to %g s%s)", missing.who, size, answer.problem, self.retry_max,
                        ", and looked at every second while unreachable" if answer.down else "")
        else:
            log.debug("federation list: the witness %s still has not cosigned checkpoint %d (%d failed request(s)): "
                      "%s", missing.who, size, missing.attempts, answer.problem)


def published_report(root: Path, witnesses) -> dict | None:
    """The list log this node publishes, for `ncii-node status` (None: it publishes
    none): its federation and size, and which of this node's witnesses (`witness use`)
    have cosigned its served checkpoint and which have not."""
    note = published_checkpoint(log_store(root))
    if note is None:
        return None
    try:
        parsed = parse_note(note)
        cp = Checkpoint.parse(parsed.text)
    except ProtocolError as exc:
        return {"federation": None, "log_size": None, "witnesses": [], "problem": str(exc)}
    cosigned = {w.vkey: has_cosigned(parsed, w.vkey) for w in witnesses}
    return {"federation": cp.origin, "log_size": cp.size, "problem": None,
            "witnesses": [{"name": w.name, "vkey": w.vkey, "cosigned": cosigned[w.vkey]} for w in witnesses]}


def format_published(report: dict, serving: bool) -> str:
    if report["problem"]:
        return f"federation list published here: its checkpoint is UNREADABLE ({report['problem']})"
    witnesses = report["witnesses"]
    missing = [w for w in witnesses if not w["cosigned"]]
    lines = [f"federation list published here: {report['federation']}, {report['log_size']} version(s) in its log"
             + (f"; its checkpoint is cosigned by {len(witnesses) - len(missing)} of the {len(witnesses)} "
                "witness(es) this node uses" if witnesses else "; this node uses no witness (`witness use`)")]
    for w in missing:
        lines.append(f"  NOT cosigned by the witness {w['name'] or w['vkey']} ({w['vkey']}): followers that require "
                     "it refuse this version; " + (
                         "the running node asks it again in the background (its log says why)" if serving else
                         "no node runs for this directory: `ncii-node serve` asks it again, or `federation "
                         "publish` the same version again"))
    return "\n".join(lines)
