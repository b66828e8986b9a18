"""Failed-PIN limiting: growing delays, then lockouts -- none of which someone on
another network can impose on a case's owner (spec/parts/cases.md §8).

Three counters gate every status or withdrawal request that names a case:

    per client address   (AddressLimiter, ADDRESS_POLICY) in this process's memory only
                         -- never stored, never logged -- under a keyed hash of the
                         address (a random key per process), IPv6 addresses by their
                         /64 network, since one machine commonly holds a whole /64;
    per case and client  (CaseNetworkCounters, CASE_POLICY) in memory, keyed by the case
      network            and the client's network (IPv4 /24, IPv6 /48): the delays and
                         the one-hour lockouts of wrong PINs apply to the network they
                         came from, so an attacker elsewhere never locks the owner out;
    per case, all        (CASE_GUARD) a counter and a "not before" time in the case's
      networks together  row: after 24 wrong PINs the case is *guarded* for 24 hours
                         (renewed by each further wrong PIN): only a network that has
                         not yet tried the case while guarded may try it, twice at most
                         in 30 days (CaseNetworkCounters.may_pass_guard). This bounds
                         guessing from many networks, and still lets the owner in from
                         theirs.

Each follows a Policy: the first `free` failures cost nothing; from then on each
failure makes the next attempt wait `base_delay * 2^(k - free)` seconds (capped at
`max_delay`); after `lock_after` failures the counter locks for `lock_duration`.

Per case, attempts are counted *before* the PIN is checked (pessimistically, in one
database transaction) and the count is reset on success, so a burst of parallel
guesses at one case cannot slip through before the first failure is recorded.

A case number that names no case has a per-case counter too (UnknownCaseCounters,
in memory, under the same policy), so that its answers -- codes, waits, wording,
lockout -- are exactly those of a real case with a wrong PIN: the limiter must not
tell anyone whether a case number exists. Both kinds of counter are forgotten by the
same rule (Policy.attempt). Per
address, attempts are taken one at a time (the case service holds a lock per
address while it checks), so each sees every earlier failure; people behind one
shared address (a NAT) wait their turn instead of locking each other out. A correct
PIN does not clear an address's failures, so that someone holding one valid case
cannot reset their address's counter between guesses at other cases.

An attempt refused by either counter is not checked at all: no PIN is compared
while a delay or a lockout runs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    free: int
    base_delay: float
    max_delay: float
    lock_after: int
    lock_duration: float
    forget_after: float = 24 * 3600.0  # a counter idle this long after its wait ends starts again

    def block_after(self, failures: int) -> tuple[float, bool]:
        """(seconds to wait after the failure numbered `failures`, locked?)"""
        if failures >= self.lock_after:
            return self.lock_duration, True
        if failures < self.free:
            return 0.0, False
        return min(self.max_delay, self.base_delay * 2 ** (failures - self.free)), False

    def attempt(self, failures: int, not_before: float, now: float, may_pass_guard: bool = False) -> "Attempt":
        """One attempt on a counter holding `failures` and `not_before`: refused while a
        wait or lock runs -- unless the lock is a case's guard and the attempt's
        network `may_pass_guard` -- otherwise counted as a failure (until it succeeds),
        which gives the counter's new values. A counter untouched for `forget_after`
        seconds after its wait ended is forgotten first."""
        guarded = now < not_before
        if guarded and not (may_pass_guard and failures >= self.lock_after):
            return Attempt(Refused(not_before - now, failures >= self.lock_after), failures, not_before)
        if not guarded and now >= not_before + self.forget_after:
            failures = 0
        failures += 1
        delay, _ = self.block_after(failures)
        return Attempt(None, failures, max(not_before, now + delay), guarded)


# Per case and client network: 3 free tries, then 2 s, 4 s, ... ; the 10th wrong PIN from
# one network locks the case for that network for an hour, and every further wrong PIN
# locks it again: about 24 guesses a day from one network.
CASE_POLICY = Policy(free=3, base_delay=2.0, max_delay=600.0, lock_after=10, lock_duration=3600.0)
# Per case, all networks together: 24 wrong PINs (a day of one network's pace) guard the
# case for 24 hours, and each further one renews the guard. No delay before that (the
# per-network counters pace each network). The numbers are in cases.md §8.
CASE_GUARD = Policy(free=24, base_delay=0.0, max_delay=0.0, lock_after=24, lock_duration=86400.0)
#: While a case is guarded, a network that has not tried it during a guard in the last
#: GUARD_MEMORY seconds may try it GUARD_TRIES times (the owner: one typo allowed).
GUARD_TRIES = 2
GUARD_MEMORY = 30 * 86400.0
# Per address: more slack (a person may mistype several times, or a family may share
# an address), 20 failures lock that address for an hour.
ADDRESS_POLICY = Policy(free=5, base_delay=1.0, max_delay=300.0, lock_after=20, lock_duration=3600.0)


@dataclass(frozen=True)
class Refused:
    retry_after: float
    locked: bool


@dataclass(frozen=True)
class Attempt:
    """The outcome of Policy.attempt: refused (not to be checked), or counted."""

    refused: Refused | None
    failures: int        # the counter's failures, this attempt included when counted
    not_before: float    # no attempt before this time (if this one fails)
    guarded: bool = False  # counted while the case was guarded (its network passed the guard)

    def block(self, now: float, policy: Policy) -> Refused | None:
        """If this attempt fails: the wait it imposes on the next one, if any."""
        if self.refused is not None or now >= self.not_before:
            return None
        return Refused(self.not_before - now, self.failures >= policy.lock_after)


@dataclass
class _Counter:
    failures: int = 0
    not_before: float = 0.0
    last_seen: float = 0.0


class AddressLimiter:
    """In-memory counters per client address. Entries are forgotten `forget_after`
    seconds after their last failure, and the oldest go first beyond `max_entries`."""

    def __init__(self, policy: Policy = ADDRESS_POLICY, *, forget_after: float = 24 * 3600.0,
                 max_entries: int = 100_000):
        self.policy = policy
        self.forget_after = forget_after
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._counters: dict[bytes, _Counter] = {}
        self._next_sweep = 0.0

    def _slot(self, address: str | None) -> bytes:
        text = address or "unknown"
        try:
            ip = ipaddress.ip_address(text)
            if ip.version == 6 and ip.ipv4_mapped is None:
                text = str(ipaddress.ip_network(f"{ip}/64", strict=False))
            elif ip.version == 6:
                text = str(ip.ipv4_mapped)
        except ValueError:
            pass
        return hashlib.blake2b(text.encode(), key=self._key, digest_size=16).digest()

    def slot(self, address: str | None) -> bytes:
        """The key under which an address is counted (never the address itself)."""
        return self._slot(address)

    def check(self, slot: bytes, now: float) -> Refused | None:
        """Refuse the attempt if a delay or lockout of this address runs."""
        self._expire(now)
        counter = self._counters.get(slot)
        if counter is None or now >= counter.not_before:
            return None
        return Refused(counter.not_before - now, counter.failures >= self.policy.lock_after)

    def failed(self, slot: bytes, now: float) -> Refused | None:
        """Record a failed attempt; return the wait it imposes on the next one, if any."""
        counter = self._counters.get(slot)
        if counter is None:
            counter = self._counters[slot] = _Counter()
        counter.failures += 1
        counter.last_seen = now
        delay, locked = self.policy.block_after(counter.failures)
        counter.not_before = now + delay
        return Refused(delay, locked) if delay > 0 else None

    def _expire(self, now: float) -> None:
        if len(self._counters) < self.max_entries and now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        cutoff = now - self.forget_after
        for slot in [s for s, c in self._counters.items() if c.last_seen < cutoff and c.not_before <= now]:
            del self._counters[slot]
        if len(self._counters) >= self.max_entries:
            oldest = sorted(self._counters, key=lambda s: self._counters[s].last_seen)
            for slot in oldest[: len(oldest) - self.max_entries + 1]:
                del self._counters[slot]

    def __len__(self) -> int:
        return len(self._counters)


class UnknownCaseCounters:
    """Per-case failed-PIN counters of case numbers that name no case, kept in memory
    so that such a number is answered exactly like a real case with a wrong PIN.

    Keyed by the first 16 bytes of the number's lookup key (HMAC-SHA256 under the case
    key): nothing here names a number. Counters are forgotten by the policy's rule
    (a day after their wait ends); beyond `max_entries` those whose wait ended first
    go first. Only the case service's database thread calls `attempt`."""

    def __init__(self, policy: Policy = CASE_GUARD, *, max_entries: int = 100_000):
        self.policy = policy
        self.max_entries = max_entries
        self._counters: dict[bytes, tuple[int, float]] = {}  # key -> (failures, not_before)
        self._next_sweep = 0.0

    def attempt(self, lookup: bytes, now: float, may_pass_guard: bool = False) -> Attempt:
        self._expire(now)
        key = lookup[:16]
        failures, not_before = self._counters.get(key, (0, 0.0))
        attempt = self.policy.attempt(failures, not_before, now, may_pass_guard)
        if attempt.refused is None:
            self._counters[key] = (attempt.failures, attempt.not_before)
        return attempt

    def _expire(self, now: float) -> None:
        if len(self._counters) < self.max_entries and now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        cutoff = now - self.policy.forget_after
        for key in [k for k, (_, not_before) in self._counters.items() if not_before <= cutoff]:
            del self._counters[key]
        if len(self._counters) >= self.max_entries:
            oldest = sorted(self._counters, key=lambda k: self._counters[k][1])
            for key in oldest[: len(oldest) - self.max_entries + 1]:
                del self._counters[key]

    def __len__(self) -> int:
        return len(self._counters)


def guard_network(address: str | None) -> str:
    """The network a case's per-network counters count under: IPv4 /24, IPv6 /48 (a
    whole site: one IPv6 customer commonly holds hundreds of /56)."""
    from node.cases.proxies import parse_address

    ip = parse_address(address)
    if ip is None:
        return "?"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass
class _CaseNetwork:
    failures: int = 0
    not_before: float = 0.0
    guard_tries: int = 0        # attempts while the case was guarded ...
    guard_since: float = 0.0    # ... counted from then, for GUARD_MEMORY
    last_seen: float = 0.0


class CaseNetworkCounters:
    """Per (case, client network) counters, in memory: CASE_POLICY's delays and lockouts
    for the network the wrong PINs come from, and the tries it made while the case was
    guarded. Keyed by a keyed hash of the case's lookup key and the network (a random
    key per process): nothing here names a case or a network. Entries are forgotten
    GUARD_MEMORY after their last use; beyond `max_entries` the oldest go first (a
    network forgotten so may try a guarded case again: cases.md §8 counts it)."""

    def __init__(self, policy: Policy = CASE_POLICY, *, max_entries: int = 200_000):
        self.policy = policy
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, _CaseNetwork] = {}
        self._next_sweep = 0.0

    def key(self, lookup: bytes, address: str | None) -> bytes:
        return hashlib.blake2b(lookup[:16] + guard_network(address).encode(), key=self._key,
                               digest_size=16).digest()

    def check(self, key: bytes, now: float) -> Refused | None:
        """Refuse the attempt while this network's delay or lockout for the case runs."""
        self._expire(now)
        entry = self._entries.get(key)
        return None if entry is None else self.policy.attempt(entry.failures, entry.not_before, now).refused

    def attempt(self, key: bytes, now: float) -> Attempt:
        """Count an attempt from this network on the case as a failure, before its PIN
        is checked (like the case's own counter; `succeeded` clears it). Call after
        `check` allowed it."""
        entry = self._entry(key, now)
        attempt = self.policy.attempt(entry.failures, min(entry.not_before, now), now)
        entry.failures, entry.not_before = attempt.failures, attempt.not_before
        return attempt

    def may_pass_guard(self, key: bytes, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is None or entry.guard_tries < GUARD_TRIES or now >= entry.guard_since + GUARD_MEMORY

    def tried_while_guarded(self, key: bytes, now: float) -> None:
        entry = self._entry(key, now)
        if entry.guard_tries == 0 or now >= entry.guard_since + GUARD_MEMORY:
            entry.guard_tries, entry.guard_since = 0, now
        entry.guard_tries += 1

    def succeeded(self, key: bytes, now: float) -> None:
        """The right PIN from this network: its failures and its tries while guarded are
        forgiven (they were the owner's own typos)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.failures, entry.not_before, entry.guard_tries = 0, 0.0, 0

    def _entry(self, key: bytes, now: float) -> _CaseNetwork:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _CaseNetwork()
        entry.last_seen = now
        return entry

    def _expire(self, now: float) -> None:
        if len(self._entries) < self.max_entries and now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        cutoff = now - GUARD_MEMORY
        for key in [k for k, e in self._entries.items() if e.last_seen < cutoff and e.not_before <= now]:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:
            oldest = sorted(self._entries, key=lambda k: self._entries[k].last_seen)
            for key in oldest[: len(oldest) - self.max_entries + 1]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
