"""The case service of a helpline node: create a case, tell its status, withdraw it.

    service = CaseService(datadir, config, sequencer, log_vkey, clients); await service.start(); ...
    await service.create(body, client_address)  -> the new case (number, PIN, ...), or an
                                                   eligibility.Refusal (nothing was stored)
    await service.status(body, client_address)  -> answer
    await service.withdraw(body, client_address) -> answer
    await service.withdraw_published_during(start, end, dry_run=...)   the operator's
                                                   clean-up after a flood (reason "abuse")
    Bad input, wrong codes and limits raise node.errors refusals (BadRequest,
    WrongCredentials, TooManyRequests, ProofOfWorkRequired, Unavailable, Failed), whose `details` are the
    fields of the answer beside "error".

Creating a case, in this order (so that a crash at any point leaves nothing that a
person was promised and the helpline cannot keep):

  1. check eligibility, the creation limits (node/cases/creation.py: TooManyRequests)
     and above the usual rate a proof of work (node/cases/pow.py: ProofOfWorkRequired) -- before the
     fingerprints, so that a refused flood costs little --, then the fingerprints
     (nothing is stored for a refusal); the case is counted from here on, and given
     back if it fails;
  2. make the case number and PIN; store the case as `pending` with the leaf hashes
     of its entries (one transaction);
  3. hand the submission entries to the sequencer and wait until a published
     checkpoint includes them;
  4. record their indices and mark the case `active`; only then answer with the
     case number and PIN.

  If the node stops between 2 and 4, nobody ever received the case number. At the
  next start (and every REPAIR_INTERVAL seconds for creations that failed while the
  node kept running), a pending case not being created right now is `abandoned`:
  its entries are looked up in the log by leaf hash and, where published, withdrawn
  (reason "error"), so no fingerprint stays in the log without a case to withdraw it.
  Several processes on one PostgreSQL database (node/log/lease.py): only the one that
  sequences repairs, and while other processes are up, a pending case, or a withdrawal
  not finished, that it is not handling itself is left alone for SHARED_GRACE seconds
  from when it first saw it: another process may be creating or withdrawing it now.

Withdrawing: the request is recorded first (state `withdrawn`), then one withdrawal
entry per 1,024 published entries of the case is appended, then each target's
withdrawal is recorded. A crash in between is finished by the same repair; asking
again appends only what is missing (idempotent). Status shows the withdrawal once
it is published.

Work is kept off the event loop: database calls run in one worker thread (its own
connection), scrypt in a small pool (it releases the GIL).

Nothing here logs a case number, a PIN, a client address or anything a person sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import weakref
from typing import Any, Callable

from node.acks.report import case_platforms
from node.cases import eligibility
from node.cases.creation import HOUR, CreationLimiter, refusal_message
from node.cases.fingerprints import CaseFingerprint, DegenerateFingerprints, FingerprintError, parse_fingerprints
from node.cases.hashes import (
    ScryptParams,
    case_lookup,
    check_pin,
    hash_pin,
    load_or_create_case_key,
    waste_pin_check,
)
from node.cases.limits import CASE_GUARD, CASE_POLICY, AddressLimiter, CaseNetworkCounters, Refused, UnknownCaseCounters
from node.cases.numbers import CaseNumberError, canonical_case_number, canonical_pin, new_case_number, new_pin
from node.cases.pow import ProofOfWork, ProofOfWorkError
from node.cases.receipt import build_receipt, receipt_policy
from node.cases.resources import HelpDirectory
from node.errors import BadRequest, Failed, ProofOfWorkRequired, TooManyRequests, Unavailable, WrongCredentials
from node.log.sequencer import LogUnavailable
from node.store.cases import CaseLookupTaken, CaseRow
from node.store.pg_lease import other_processes
from node.store.tiles import TileStore
from node.store.worker import DatabaseWorker
from node.witness.proofs import ProofUnavailable
from protocol.entries import MAX_TARGETS, Withdrawal, day_to_json, encode_entry
from protocol.merkle import leaf_hash

log = logging.getLogger(__name__)

REPAIR_INTERVAL = 30.0
#: Several processes: seconds a pending case or an unfinished withdrawal that another
#: process may be handling is left alone (beyond any append's wait for publication).
SHARED_GRACE = 180.0
PIN_WORKERS = 2
MAX_WAITING_PER_ADDRESS = 16  # status/withdraw requests queued per client address
DAY = 86400


def today(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // DAY)


POW_ASKED = {
    "fr": "Un instant : pour protéger ce service, votre navigateur doit faire un petit calcul avant que le dossier "
          "soit ouvert. Rien n'a encore été enregistré.",
    "en": "One moment: to protect this service, your browser must do a short computation before the case is "
          "opened. Nothing was registered yet.",
}

WRONG_CODES = ("wrong case number or PIN. Check both (the case number is XXXX-XXXX-XXXX-XXXX, "
               "the PIN 8 digits) and try again.")


def _too_many(refused: Refused, *, case_locked: bool, guarded: bool = False) -> TooManyRequests:
    wait = max(1, int(refused.retry_after + 0.999))
    if refused.locked and guarded:
        hours = max(1, round(wait / 3600))
        message = (f"too many wrong PINs were tried for this case, from several connections: for {hours} hour(s) "
                   "it can only be opened from a connection that has not tried it yet. Your fingerprints stay "
                   "active meanwhile. If this is your case, try from another connection (mobile data or another "
                   "Wi-Fi network), or contact the helpline.")
        return TooManyRequests(message, wait=wait, retry_after=wait, locked=True, guarded=True)
    if refused.locked and case_locked:
        hours = max(1, round(wait / 3600))
        message = (f"too many wrong PINs for this case: it is locked for {hours} hour(s). Your "
                   "fingerprints stay active meanwhile. Try again later, or contact the helpline.")
    elif refused.locked:
        minutes = max(1, round(wait / 60))
        message = (f"too many wrong attempts from your connection: please wait {minutes} minute(s) "
                   "before trying again.")
    else:
        message = f"please wait {wait} second(s) before trying again (after a wrong case number or PIN)."
    return TooManyRequests(message, wait=wait, retry_after=wait, locked=refused.locked)


def _published(index: int, checkpoint_size: int, days: dict[int, int]) -> dict:
    """Where and when one entry of a case was published: its log index, the size of the
    first checkpoint that included it, and that checkpoint's UTC day."""
    day = days.get(checkpoint_size)
    return {"index": index, "checkpoint_size": checkpoint_size, "day": day_to_json(day) if day else None}


def read_new_case(body: Any, *, caps, day: int, directory: HelpDirectory,
                  before_fingerprints: Callable[[str], None] | None = None,
                  ) -> tuple[eligibility.Refusal | None, list[CaseFingerprint]]:
    """The body of POST /v1/cases, checked: (refusal, []) when not eligible (the help
    pointed to comes from `directory`), else (None, the fingerprints, within `caps`:
    [cases] of the config). Raises BadRequest, and nothing else, on any JSON value
    (tests/test_fuzz_regressions.py and fuzz/harnesses.py hold it to that) -- except
    what `before_fingerprints(lang)`, called once the answers are eligible and before
    the fingerprints are read, raises (the creation limits: TooManyRequests,
    ProofOfWorkRequired)."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object {"eligibility": {...}, "fingerprints": [...]}')
    unknown = sorted(set(map(str, body)) - {"eligibility", "fingerprints", "lang", "country", "proof_of_work"})
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} "
                         "(send eligibility, fingerprints, lang, country, and proof_of_work when asked)")
    try:
        lang = eligibility.language(body.get("lang"))
        where = eligibility.country(body.get("country"), directory)
        refusal = eligibility.check(body.get("eligibility"), lang, where, directory)
    except eligibility.EligibilityError as exc:
        raise BadRequest(str(exc)) from None
    if refusal is not None:
        return refusal, []
    if before_fingerprints is not None:
        before_fingerprints(lang)
    try:
        return None, parse_fingerprints(body.get("fingerprints"), caps=caps, day=day)
    except DegenerateFingerprints as exc:
        raise BadRequest(str(exc), degenerate=exc.positions) from None
    except FingerprintError as exc:
        raise BadRequest(str(exc)) from None


OPERATOR_WITHDRAW_HINT = ('send {"from": <Unix seconds>, "to": <Unix seconds>, "dry_run": true|false}: the cases '
                          'whose entries the log published in that window are withdrawn with reason "abuse"')


def read_withdraw_window(body: Any) -> tuple[float, float, bool]:
    """The body of POST /admin/cases/withdraw: (from, to, dry_run); BadRequest else."""
    window = (body.get("from"), body.get("to")) if isinstance(body, dict) else (None, None)
    if not isinstance(body, dict) or set(body) - {"from", "to", "dry_run"} or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in window) or window[0] >= window[1] \
            or not isinstance(body.get("dry_run", False), bool):
        raise BadRequest(OPERATOR_WITHDRAW_HINT)
    return window[0], window[1], body.get("dry_run", False)


def read_case_codes(body: Any) -> tuple[str, str]:
    """(canonical case number, PIN) from the body of POST /v1/cases/status or
    /withdraw. Raises BadRequest, and nothing else, on any JSON value."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object {"case_number": "...", "pin": "..."}')
    unknown = sorted(set(map(str, body)) - {"case_number", "pin", "lang"})
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} (send case_number and pin)")
    try:
        return canonical_case_number(body.get("case_number")), canonical_pin(body.get("pin"))
    except CaseNumberError as exc:
        # A malformed number or PIN is a typing mistake, not a guess: no attempt is counted.
        raise BadRequest(str(exc)) from None


class CaseService:
    def __init__(self, datadir, config, sequencer, log_vkey: str, clients):
        self.datadir = datadir
        self.config = config
        self.sequencer = sequencer
        self.log_vkey = log_vkey
        self.origin = config.node.origin
        self.params = ScryptParams(config.cases.pin_scrypt_n, config.cases.pin_scrypt_r, config.cases.pin_scrypt_p)
        self.caps = config.cases  # per-case caps (node/cases/fingerprints.py)
        self.creations = CreationLimiter(config.cases)
        self.pow = ProofOfWork(config.cases.proof_of_work_bits)
        self.help = HelpDirectory.from_config(config.page)  # where a refusal points to
        self.addresses = AddressLimiter()
        self.clients = clients  # who a request comes from, for the limiters (node/cases/proxies.py)
        self.unknown_cases = UnknownCaseCounters(CASE_GUARD)  # touched only in the database thread
        self.case_networks = CaseNetworkCounters(CASE_POLICY)  # per case and client network, in memory
        self.worker = DatabaseWorker(datadir.db_path, name="cases-db")
        self._pin_executor = concurrent.futures.ThreadPoolExecutor(PIN_WORKERS, thread_name_prefix="cases-pin")
        self._key = b""
        self._ack_signer = None          # DIR/keys/ack.key: the publication cosignature in receipts
        self._tiles = TileStore.of(datadir)
        self._in_flight: set[int] = set()
        self._first_seen: dict[tuple[str, int], float] = {}  # several processes: SHARED_GRACE
        self._case_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._repair_task: asyncio.Task | None = None
        self.clock: Callable[[], float] = time.time  # tests move time forward through this
        self._address_locks: weakref.WeakValueDictionary[bytes, asyncio.Lock] = weakref.WeakValueDictionary()
        self._address_waiting: dict[bytes, int] = {}

    # ---------------------------------------------------------------- lifecycle
    @property
    def case_key_path(self):
        return (self.datadir.root / self.config.paths.case_key).absolute()

    async def start(self) -> None:
        self._key = await self.worker.run(load_or_create_case_key, self.datadir, self.case_key_path)
        self._ack_signer = await self.worker.run(lambda: self.datadir.load_ack_signer(create=True))
        hour = int(self.clock() // HOUR)
        rows = await self.worker.cases.creation_counts(hour - 23)
        self.creations.seed([(row[0], row[1]) for row in rows])
        await self.repair()
        self._repair_task = asyncio.create_task(self._repair_loop(), name="cases-repair")

    async def stop(self) -> None:
        if self._repair_task is not None:
            self._repair_task.cancel()
            try:
                await self._repair_task
            except asyncio.CancelledError:
                pass
        try:
            await self.flush_creation_counts()
        except Exception:
            log.exception("cases: could not record the last refusal counts")
        await self.worker.close()
        self._tiles.close()
        self._pin_executor.shutdown(wait=True)

    async def _pin_call(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pin_executor, fn, *args)

    def _lock_for(self, case_id: int) -> asyncio.Lock:
        lock = self._case_locks.get(case_id)
        if lock is None:
            lock = asyncio.Lock()
            self._case_locks[case_id] = lock
        return lock

    # ---------------------------------------------------------------- create
    async def create(self, body: Any, address: str | None = None) -> dict | eligibility.Refusal:
        day, now = today(), self.clock()
        # The creation limits and the proof of work are checked once the answers are
        # eligible and before the fingerprints are read: a refused flood costs little.
        refusal, fingerprints = read_new_case(body, caps=self.caps, day=day, directory=self.help,
                                              before_fingerprints=lambda lang: self._check_limits(body, address,
                                                                                                  lang, now))
        if refusal is not None:
            return refusal
        ticket = self.creations.admit(address, now)  # no await since the check: one step
        try:
            return await self._create(fingerprints, day)
        except BaseException:
            self.creations.give_back(ticket)
            raise

    def _check_limits(self, body: dict, address: str | None, lang: str, now: float) -> None:
        """The creation limits (TooManyRequests), then the proof of work if one is due
        (ProofOfWorkRequired); the caller counts the case (`admit`) with no await
        between, so that the check and the count are one step (node/cases/creation.py)."""
        refusal = self.creations.refusal(address, now)
        if refusal is not None:
            raise TooManyRequests(refusal_message(refusal, lang), wait=refusal.retry_after,
                                  retry_after=refusal.retry_after, reason=refusal.reason, locked=False)
        if self.creations.pow_required(now):
            try:
                self.pow.check(body.get("proof_of_work"), now)
            except ProofOfWorkError as exc:
                self.creations.pow_asked += 1
                raise ProofOfWorkRequired(POW_ASKED.get(lang, POW_ASKED["en"])
                                          + (f" ({exc})" if "proof_of_work" in body else ""),
                                          proof_of_work=self.pow.challenge(now)) from None

    async def _create(self, fingerprints: list, day: int) -> dict:
        number, pin = new_case_number(), new_pin()
        canonical = canonical_case_number(number)
        salt, pin_hash = await self._pin_call(hash_pin, canonical, pin, self.params)
        rows = [(leaf_hash(fp.entry), fp.signal, fp.low_quality) for fp in fingerprints]
        for _ in range(3):
            try:
                case_id = await self.worker.cases.insert_pending_case(case_lookup(self._key, canonical), salt,
                                                                      pin_hash, self.params.to_text(), day, rows,
                                                                      int(self.clock() // HOUR))
                break
            except CaseLookupTaken:  # a case number already taken (2^-75 per pair): draw again
                number, pin = new_case_number(), new_pin()
                canonical = canonical_case_number(number)
                salt, pin_hash = await self._pin_call(hash_pin, canonical, pin, self.params)
        else:
            raise Failed("could not draw a free case number; please try again")

        self._in_flight.add(case_id)
        try:
            try:
                appended = await self.sequencer.append([fp.entry for fp in fingerprints])
            except LogUnavailable as exc:
                # The case stays pending; the repair abandons it and withdraws whatever
                # of it reaches the log. The person gets no case number.
                log.warning("cases: a case could not be published (%s); it will be abandoned", exc)
                raise Unavailable("the helpline cannot publish fingerprints right now; nothing was "
                                  "registered. Please try again in a few minutes.") from None
            await self.worker.cases.publish_case(case_id, [(a.index, a.checkpoint_size) for a in appended])
            days = await self.worker.log.published_days({a.checkpoint_size for a in appended})
        finally:
            self._in_flight.discard(case_id)
        log.info("cases: a case was opened with %d fingerprint(s)", len(fingerprints))
        return {
            "case_number": number,
            "pin": pin,
            "fingerprints": len(fingerprints),
            "low_quality": sum(fp.low_quality for fp in fingerprints),
            "published": [_published(a.index, a.checkpoint_size, days) for a in appended],
            **await self._receipt([a.index for a in appended]),
        }

    # ---------------------------------------------------------------- opening a case with its codes
    async def _open(self, body: Any, address: str | None) -> CaseRow:
        canonical, pin = read_case_codes(body)
        slot = self.addresses.slot(address)
        waiting = self._address_waiting.get(slot, 0)
        if waiting >= MAX_WAITING_PER_ADDRESS:
            raise TooManyRequests("too many requests at once from your connection; please try again in a moment",
                                  wait=1, retry_after=1, locked=False)
        lock = self._address_locks.get(slot)
        if lock is None:
            lock = self._address_locks[slot] = asyncio.Lock()
        self._address_waiting[slot] = waiting + 1
        try:
            # One attempt at a time per address: each sees every earlier failure.
            async with lock:
                return await self._check_codes(slot, address, canonical, pin)
        finally:
            self._address_waiting[slot] -= 1
            if not self._address_waiting[slot]:
                del self._address_waiting[slot]

    async def _check_codes(self, slot: bytes, address: str | None, canonical: str, pin: str) -> CaseRow:
        # An unknown case number goes through the same steps as a real case with a
        # wrong PIN -- its per-case counter under CASE_GUARD (in memory), the same
        # per-network counters, one database write transaction, one scrypt hash -- so
        # that neither the answers nor their time tell whether the number exists.
        now = self.clock()
        refused = self.addresses.check(slot, now)
        if refused is not None:
            raise _too_many(refused, case_locked=False)
        lookup = case_lookup(self._key, canonical)
        pair = self.case_networks.key(lookup, address)  # this case, from this network
        refused = self.case_networks.check(pair, now)
        if refused is not None:
            raise _too_many(refused, case_locked=True)
        case, attempt = await self.worker.cases.begin_pin_attempt(lookup, now, CASE_GUARD, self.unknown_cases,
                                                                  self.case_networks.may_pass_guard(pair, now))
        if attempt.refused is not None:
            raise _too_many(attempt.refused, case_locked=True, guarded=True)
        if attempt.guarded:
            self.case_networks.tried_while_guarded(pair, now)
        mine = self.case_networks.attempt(pair, now)
        if case is None:
            await self._pin_call(waste_pin_check, self.params)
        else:
            params = ScryptParams.from_text(case.pin_params)
            if await self._pin_call(check_pin, canonical, pin, case.pin_salt, case.pin_hash, params):
                await self.worker.cases.pin_succeeded(case.id, (case.failed_pins, case.not_before))
                self.case_networks.succeeded(pair, now)
                return case
        later = self.clock()
        # A wrong PIN that passed the guard is answered as wrong (the guard is no news).
        raise self._failure(self.addresses.failed(slot, later), mine.block(later, CASE_POLICY),
                            None if attempt.guarded else attempt.block(later, CASE_GUARD))

    @staticmethod
    def _failure(address_refused: Refused | None, case_refused: Refused | None,
                 guard_refused: Refused | None = None) -> TooManyRequests | WrongCredentials:
        """The answer to a failed attempt: 429 when it started a lockout (for this
        network, or the case's guard), else 401 (with the wait it imposes on the next
        attempt, if any)."""
        if case_refused is not None and case_refused.locked:
            return _too_many(case_refused, case_locked=True)
        if guard_refused is not None and guard_refused.locked:
            return _too_many(guard_refused, case_locked=True, guarded=True)
        if address_refused is not None and address_refused.locked:
            return _too_many(address_refused, case_locked=False)
        wait = max((r.retry_after for r in (case_refused, address_refused) if r is not None), default=0.0)
        extra = {"retry_after": max(1, int(wait + 0.999))} if wait > 0 else {}
        return WrongCredentials(WRONG_CODES, **extra)

    # ---------------------------------------------------------------- status
    async def status(self, body: Any, address: str | None) -> dict:
        case = await self._open(body, address)
        return await self._describe(case.id)

    async def _describe(self, case_id: int) -> dict:
        def read(db) -> dict:
            case = db.cases.get_case(case_id)
            entries = db.cases.entries_of(case_id)
            withdrawals = db.cases.withdrawals_of(case_id)
            published = [e for e in entries if e.idx is not None]
            # the day each was published: coarse on purpose, like every time we keep
            days = db.log.published_days({e.checkpoint_size for e in published})
            answer: dict[str, Any] = {
                "state": "withdrawn" if case.state == "withdrawn" else "active",
                "created": day_to_json(case.created_day),
                "fingerprints": len(entries),
                "low_quality": sum(e.low_quality for e in entries),
                "published": [_published(e.idx, e.checkpoint_size, days) for e in published],
                "withdrawn_at": None,
                "feedback": _feedback(db, self.origin, published),
                "platforms": [],
            }
            if case.state == "withdrawn":
                done = {w.target for w in withdrawals}
                complete = all(e.idx in done for e in published)
                answer["withdrawn_at"] = {
                    "by": "helpline" if case.withdrawn_reason == "abuse" else "person",
                    "requested": day_to_json(case.withdrawn_day) if case.withdrawn_day else None,
                    "published": complete,
                    "day": day_to_json(max(w.day for w in withdrawals)) if complete and withdrawals else None,
                    "checkpoint_size": max(w.checkpoint_size for w in withdrawals) if complete and withdrawals
                    else None,
                    "entries": sorted({w.withdrawal_idx for w in withdrawals}),
                }
            answer["platforms"] = _platforms(db, self.origin, published,
                                             withdrawals if case.state == "withdrawn" else None)
            return answer

        return await self.worker.call(read)

    # ---------------------------------------------------------------- receipt
    async def receipt(self, body: Any, address: str | None) -> dict:
        """The newest receipt of a case (POST /v1/cases/receipt): it may carry platforms'
        acknowledgements that the one given at creation or withdrawal could not."""
        case = await self._open(body, address)
        return await self._receipt_of(case.id)

    async def receipt_policy(self) -> bytes:
        """GET /v1/cases/receipt-policy: the tlog-policy receipts are checked with (it names the
        followed platforms' current acknowledgement keys, so it is read each time)."""
        return await self.worker.call(receipt_policy, self.origin, self.log_vkey, self._ack_signer.verifier_key())

    async def _receipt_of(self, case_id: int) -> dict:
        def indices(db) -> list[int]:
            published = [e.idx for e in db.cases.entries_of(case_id) if e.idx is not None]
            return published + [w.withdrawal_idx for w in db.cases.withdrawals_of(case_id)]

        return await self._receipt(await self.worker.call(indices))

    async def _receipt(self, indices: list[int]) -> dict:
        """{"receipt": the proof file's text, "receipt_file": a name to save it under},
        or both null when none can be made now (never fails the request)."""
        indices = sorted(set(indices))
        if not indices:
            return {"receipt": None, "receipt_file": None}
        try:
            proofs = await self.worker.call(build_receipt, self._tiles, self._ack_signer, self.origin, indices)
        except ProofUnavailable as exc:
            log.warning("cases: no receipt could be made (%s)", exc)
            return {"receipt": None, "receipt_file": None}
        date = day_to_json(today())
        return {"receipt": proofs.to_bytes().decode("utf-8"), "receipt_file": f"receipt-{date}.tlog-proof"}

    # ---------------------------------------------------------------- withdraw
    async def withdraw(self, body: Any, address: str | None) -> dict:
        case = await self._open(body, address)
        await self.worker.cases.mark_withdrawn(case.id, today())
        try:
            await self._append_withdrawals(case.id, "withdrawn-by-person")
        except LogUnavailable:
            raise Unavailable("your withdrawal is recorded and will be published as soon as the "
                              "helpline's log can be written again; check the status in a few minutes",
                              state="withdrawn") from None
        return {**await self._describe(case.id), **await self._receipt_of(case.id)}

    async def withdraw_published_during(self, start: float, end: float, *, dry_run: bool = False) -> dict:
        """The operator's clean-up after a flood (`ncii-node cases withdraw`): withdraw,
        with reason `abuse`, every active case whose entries were first published by a
        checkpoint published in (start, end] -- of size in (first_size, last_size].
        Each is recorded first, then its withdrawals appended, like a person's
        withdrawal; a crash in between is finished by the repair with the same reason."""
        first_size = await self.worker.log.size_published_by(start)
        last_size = await self.worker.log.size_published_by(end)
        cases = await self.worker.cases.active_cases_published_in(first_size, last_size)
        entries = 0
        for case_id in cases:
            entries += len(await self.worker.cases.unwithdrawn_targets(case_id))
        answer = {"cases": len(cases), "entries": entries, "withdrawn": False, "first_size": first_size,
                  "last_size": last_size}
        if dry_run or not cases:
            return answer
        for case_id in cases:
            await self.worker.cases.mark_withdrawn(case_id, today(), "abuse")
        for case_id in cases:
            await self._append_withdrawals(case_id, "abuse")
        log.warning("cases: the operator withdrew %d case(s), %d entries, as abuse", len(cases), entries)
        return {**answer, "withdrawn": True}

    async def _append_withdrawals(self, case_id: int, reason: str) -> int:
        """Append withdrawal entries for every published entry of the case that no
        recorded withdrawal names yet; record them. Returns how many were withdrawn."""
        async with self._lock_for(case_id):
            targets = await self.worker.cases.unwithdrawn_targets(case_id)
            published_size = self.sequencer.published.size
            targets = [t for t in targets if t < published_size]
            if not targets:
                return 0
            chunks = [tuple(targets[i:i + MAX_TARGETS]) for i in range(0, len(targets), MAX_TARGETS)]
            appended = await self.sequencer.append([encode_entry(Withdrawal(c, reason)) for c in chunks])
            day = today()
            rows = [(t, a.index, a.checkpoint_size, day) for chunk, a in zip(chunks, appended) for t in chunk]
            await self.worker.cases.record_withdrawals(case_id, rows)
            log.info("cases: %d entr%s withdrawn (%s)", len(targets), "y" if len(targets) == 1 else "ies", reason)
            return len(targets)

    # ---------------------------------------------------------------- repair
    async def _repair_loop(self) -> None:
        while True:
            await asyncio.sleep(REPAIR_INTERVAL)
            try:
                await self.repair()
                await self.flush_creation_counts()
            except Exception:
                log.exception("cases: repair round failed; retrying later")

    async def flush_creation_counts(self) -> None:
        """Refusals and proofs of work asked since the last flush, into this hour's row
        of `case_creations` (for `ncii-node status`): one write every REPAIR_INTERVAL at
        most, however many requests were refused."""
        refused, asked = self.creations.take_counts()
        if refused or asked:
            await self.worker.cases.add_creation_counts(int(self.clock() // HOUR), refused, asked)

    async def repair(self) -> None:
        """Abandon interrupted creations and finish interrupted withdrawals."""
        sequencer = self.sequencer
        if sequencer.shared and not sequencer.lease.held:
            return  # the process that sequences repairs
        published = sequencer.published.size
        settled = sequencer.stored_count <= published  # nothing stored waits for publication
        pending = await self.worker.cases.cases_in_state("pending")
        others = sequencer.shared and await self.worker.call(other_processes) > 0
        if others:
            pending = self._left_alone_long_enough("pending", pending)
        for case_id in pending:
            if case_id in self._in_flight:
                continue
            await self.worker.call(self._resolve_pending, case_id, published, settled)
        unfinished = await self.worker.cases.cases_to_finish_withdrawing()  # abandoned just now too
        if others:
            unfinished = self._left_alone_long_enough("withdrawing", unfinished)
        for case_id in unfinished:
            case = await self.worker.cases.get_case(case_id)
            reason = (case.withdrawn_reason or "withdrawn-by-person") if case.state == "withdrawn" else "error"
            try:
                await self._append_withdrawals(case_id, reason)
            except LogUnavailable:
                log.warning("cases: cannot publish pending withdrawals yet (log unavailable); will retry")
                return

    def _left_alone_long_enough(self, kind: str, case_ids: list[int]) -> list[int]:
        now = time.monotonic()
        current = {(kind, case_id) for case_id in case_ids}
        for key in [k for k in self._first_seen if k[0] == kind and k not in current]:
            del self._first_seen[key]
        return [case_id for case_id in case_ids
                if now - self._first_seen.setdefault((kind, case_id), now) >= SHARED_GRACE]

    def _resolve_pending(self, db, case_id: int, published_size: int, settled: bool) -> None:
        """(worker thread) Find a pending case's entries in the published log by leaf
        hash; abandon the case when every entry is found or nothing more can come."""
        entries = db.cases.entries_of(case_id)
        found: dict[int, tuple[int, int]] = {}
        taken: set[int] = set()
        for e in entries:
            candidates = [i for i in db.log.find_by_leaf_hash(e.leaf_hash)
                          if i < published_size and i not in taken]
            claimed = db.cases.claimed_indices(candidates)
            free = [i for i in candidates if i not in claimed]
            if free:
                found[e.position] = (free[0], published_size)
                taken.add(free[0])
        if len(found) < len(entries) and not settled:
            return  # some entries may still be on their way to a checkpoint
        db.cases.abandon_case(case_id, found)
        log.warning("cases: an interrupted case creation was abandoned; %d of its entries reached the log "
                    "and will be withdrawn", len(found))


def _platforms(db, own_origin: str, published: list, withdrawals: list | None) -> list[dict]:
    """Per platform this helpline follows: when it applied the case's fingerprints and
    its withdrawal (node/acks/report.py)."""
    return case_platforms(db, own_origin, [(e.idx, e.checkpoint_size) for e in published],
                          None if withdrawals is None else [(w.withdrawal_idx, w.checkpoint_size) for w in withdrawals])


def _feedback(db, own_origin: str, published: list) -> list[dict]:
    """Per platform and entry, the latest verdict a followed log published about one
    of these entries (quoting the right leaf hash). `name` is the name the helpline's
    operator gave the platform (`follow add --name`, or an announced name approved with
    `follow name --from-announcement`), or null: what a platform says about itself --
    its announced name, its origin -- never reaches the person unchecked (the page then
    says "a partner platform")."""
    names = {followed.origin: followed.name or None for followed in db.follow.list_logs()}
    out = []
    for e in published:
        latest: dict[str, Any] = {}
        for row in db.follow.feedback_for(own_origin, e.idx):
            if row.leaf_hash != e.leaf_hash:
                continue  # a verdict about some other entry: not ours
            if row.from_origin not in latest or row.from_index > latest[row.from_origin].from_index:
                latest[row.from_origin] = row
        for origin, row in sorted(latest.items()):
            # the day this node verified the verdict: feedback entries carry no time
            learnt = db.follow.verified_at(origin, row.from_index)
            out.append({"platform": origin, "name": names.get(origin), "index": e.idx,
                        "verdict": row.verdict, "day": day_to_json(today(learnt)) if learnt else None})
    return out
