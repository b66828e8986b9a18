#!/usr/bin/env python3
"""How many PINs can someone who knows a case number try, and can they keep the owner
out? Runs the node's own failed-PIN counters (node/cases/limits.py: the per-address
limiter, the per case-and-network counters, the case's guard) on a simulated clock:
an attacker with N networks (IPv4 /24) and one address in each tries as fast as the
counters let it, for --days days; the owner, on a network of their own, tries the right
PIN once an hour all along. Prints, per N, the guesses in the first day, per day
after it, a year's worth and its chance of finding the PIN among 10^8, and how many of
the owner's hourly tries were refused. spec/parts/cases.md §8 quotes it.

    .venv/bin/python scripts/sim_pin_guessing.py [--days 30] [--networks 1 10 100 1000]
"""

from __future__ import annotations

import argparse
import heapq
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PINS = 10**8


def simulate(networks: int, days: float) -> dict:
    from node.cases.limits import (
        ADDRESS_POLICY,
        CASE_GUARD,
        CASE_POLICY,
        AddressLimiter,
        CaseNetworkCounters,
        UnknownCaseCounters,
    )

    lookup = b"L" * 32
    addresses = AddressLimiter(ADDRESS_POLICY)
    per_network = CaseNetworkCounters(CASE_POLICY)
    case = UnknownCaseCounters(CASE_GUARD)  # the case's own counter: the same Policy as its row
    end = days * 86400.0
    guesses_by_day: dict[int, int] = {}
    owner_refused = owner_tries = 0
    # Each client (network i, or the owner) is due to try at a time; earliest first.
    queue = [(0.0, i) for i in range(networks)] + [(0.0, -1)]
    heapq.heapify(queue)
    while queue:
        now, who = heapq.heappop(queue)
        if now > end:
            continue
        owner = who == -1
        address = "198.51.100.7" if owner else f"10.{who // 256}.{who % 256}.1"
        slot = addresses.slot(address)
        pair = per_network.key(lookup, address)
        waits = [r for r in (addresses.check(slot, now), per_network.check(pair, now)) if r is not None]
        attempt = None
        if not waits:
            before = case._counters.get(lookup[:16], (0, 0.0))
            attempt = case.attempt(lookup, now, per_network.may_pass_guard(pair, now))
            if attempt.refused is not None:
                waits.append(attempt.refused)
        if waits:
            if owner:
                owner_refused += 1
                owner_tries += 1
                heapq.heappush(queue, (now + 3600.0, who))
            else:
                heapq.heappush(queue, (now + max(1.0, max(w.retry_after for w in waits)), who))
            continue
        if attempt.guarded:
            per_network.tried_while_guarded(pair, now)
        mine = per_network.attempt(pair, now)
        if owner:  # the right PIN: its own count is taken back, as pin_succeeded does
            owner_tries += 1
            failures, not_before = before
            case._counters[lookup[:16]] = (failures, not_before)
            per_network.succeeded(pair, now)
            heapq.heappush(queue, (now + 3600.0, who))
            continue
        guesses_by_day[int(now // 86400)] = guesses_by_day.get(int(now // 86400), 0) + 1
        addresses.failed(slot, now)
        later = [r for r in (mine.block(now, CASE_POLICY), attempt.block(now, CASE_GUARD)) if r is not None]
        heapq.heappush(queue, (now + max([1.0] + [r.retry_after for r in later]), who))
    first = guesses_by_day.get(0, 0)
    rest = sum(n for day, n in guesses_by_day.items() if day > 0) / max(1.0, days - 1)
    year = first + 364 * rest
    return {"networks": networks, "first_day": first, "per_day_after": rest, "year": year,
            "chance_in_a_year": year / PINS, "owner_refused": owner_refused, "owner_tries": owner_tries}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--networks", type=int, nargs="+", default=[1, 10, 100, 1000])
    args = parser.parse_args()
    print(f"{'networks':>8} {'day 1':>7} {'per day after':>14} {'a year':>9} {'chance/year':>12} "
          f"{'owner refused':>14}")
    for n in args.networks:
        r = simulate(n, args.days)
        print(f"{n:>8} {r['first_day']:>7} {r['per_day_after']:>14.1f} {r['year']:>9.0f} "
              f"{r['chance_in_a_year']:>12.5%} {r['owner_refused']:>6} of {r['owner_tries']}")
    print("before (one counter per case, 1-hour lock renewed by each wrong PIN): about 24 guesses a day whatever "
          "the networks (8,760 a year, 0.00876 %), and an attacker on any network kept the owner out for good")
    return 0


if __name__ == "__main__":
    sys.exit(main())
