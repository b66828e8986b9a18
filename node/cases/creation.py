"""Limits on opening cases: a public intake feeds a permanent log that every follower
copies, so nobody may open cases without bound (spec/parts/cases.md §11).

Layers, each a sliding window over the cases admitted (an hour, and 24 hours):

    per client address    [cases] per_address_per_hour / per_address_per_day
    per client network    per_network_per_hour / per_network_per_day  (IPv4 /24, IPv6 /56)
    node-wide budget      per_hour / per_day
    proof of work         asked (428, node/cases/pow.py) once more than
                          proof_of_work_above_per_hour cases were admitted in the last hour

A case is *admitted* (counted) before its PIN is hashed and its entries appended, and
given back if its creation then fails, so that parallel requests cannot all slip under
a limit. A refusal is 429 with Retry-After (when the oldest case in the full window
leaves it), `reason` ("address", "network", "day-budget", "hour-budget") and a kind
message in the person's language that says nothing was registered.

Client addresses and networks are kept in memory only, as keyed hashes (a random key
per process), and forgotten a day after their last case. The node-wide counts are also
kept per UTC hour in the `case_creations` table (node/store/cases.py): counts only,
nothing about a case or a person; a restart reloads the last 24 hours from it, and
`ncii-node status` shows them.
"""

from __future__ import annotations

import collections
import hashlib
import secrets
from dataclasses import dataclass

from node.cases.proxies import client_networks

HOUR = 3600.0
DAY = 86400.0
MAX_CLIENTS = 100_000  # address and network windows kept at most (the oldest go first)


@dataclass(frozen=True)
class Refusal:
    reason: str           # "address" | "network" | "hour-budget" | "day-budget"
    retry_after: int      # seconds


MESSAGES = {
    "fr": {
        "connection": "Trop de dossiers ont été ouverts depuis votre connexion ces dernières heures. Rien n'a été "
                      "enregistré, et vos images restent sur votre appareil. Vous pourrez réessayer dans {wait}. "
                      "Si c'est urgent, contactez directement la ligne d'écoute.",
        "node": "La ligne d'écoute reçoit en ce moment beaucoup plus de demandes que d'habitude. Rien n'a été "
                "enregistré, et vos images restent sur votre appareil. Vous pourrez réessayer dans {wait}. "
                "Si c'est urgent, contactez directement la ligne d'écoute.",
        "minutes": "{n} minute(s)", "hours": "{n} heure(s)",
    },
    "en": {
        "connection": "Too many cases were opened from your connection in the last hours. Nothing was registered, "
                      "and your pictures stay on your device. You can try again in {wait}. If it is urgent, "
                      "contact the helpline directly.",
        "node": "The helpline is receiving many more requests than usual right now. Nothing was registered, and "
                "your pictures stay on your device. You can try again in {wait}. If it is urgent, contact the "
                "helpline directly.",
        "minutes": "{n} minute(s)", "hours": "{n} hour(s)",
    },
}


def refusal_message(refusal: Refusal, lang: str) -> str:
    texts = MESSAGES.get(lang, MESSAGES["en"])  # the page shows its own text in every language
    minutes = max(1, -(-refusal.retry_after // 60))
    wait = texts["minutes"].format(n=minutes) if minutes < 120 else texts["hours"].format(n=-(-minutes // 60))
    kind = "connection" if refusal.reason in ("address", "network") else "node"
    return texts[kind].format(wait=wait)


class _Window:
    """Admission times of one client or of the node, the last 24 hours' at most."""

    __slots__ = ("times",)

    def __init__(self):
        self.times: collections.deque[float] = collections.deque()

    def forget(self, now: float) -> None:
        while self.times and self.times[0] <= now - DAY:
            self.times.popleft()

    def refusal(self, now: float, per_hour: int, per_day: int, hour_reason: str, day_reason: str) -> Refusal | None:
        """None if one more case fits both windows; else when the window that is full
        will have room again."""
        self.forget(now)
        if len(self.times) >= per_day:
            return Refusal(day_reason, _wait(self.times[len(self.times) - per_day] + DAY - now))
        in_hour = [t for t in self.times if t > now - HOUR]
        if len(in_hour) >= per_hour:
            return Refusal(hour_reason, _wait(in_hour[len(in_hour) - per_hour] + HOUR - now))
        return None

    def count(self, now: float, window: float) -> int:
        return sum(1 for t in self.times if t > now - window)


def _wait(seconds: float) -> int:
    return max(1, int(seconds + 0.999))


class CreationLimiter:
    """In memory, on the event loop (no lock needed). `admit` then `give_back` if the
    creation fails; `pow_required` tells whether to ask for a proof of work."""

    def __init__(self, policy):
        self.policy = policy  # [cases] of the config (node.config.CasesSection): the limits
        self._key = secrets.token_bytes(32)
        self._clients: collections.OrderedDict[bytes, _Window] = collections.OrderedDict()
        self.node = _Window()
        self.refused: collections.Counter[str] = collections.Counter()  # since the last flush (status)
        self.pow_asked = 0

    def seed(self, hourly: list[tuple[int, int]]) -> None:
        """Cases admitted before a restart: (UTC hour number, count) of the last 24 hours,
        each placed at the end of its hour (so none leaves a window too early)."""
        for hour, count in sorted(hourly):
            self.node.times.extend([(hour + 1) * HOUR - 1] * count)

    def _client(self, key: str) -> _Window:
        hashed = hashlib.blake2b(key.encode(), key=self._key, digest_size=16).digest()
        window = self._clients.get(hashed)
        if window is None:
            window = self._clients[hashed] = _Window()
            if len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(hashed)
        return window

    def _checks(self, address: str | None) -> tuple:
        p = self.policy
        address_key, network_key = client_networks(address)
        return ((self._client("a " + address_key), p.per_address_per_hour, p.per_address_per_day, "address"),
                (self._client("n " + network_key), p.per_network_per_hour, p.per_network_per_day, "network"),
                (self.node, p.per_hour, p.per_day, "budget"))

    def refusal(self, address: str | None, now: float) -> Refusal | None:
        """Why one more case from this client may not be opened now, or None."""
        for window, per_hour, per_day, reason in self._checks(address):
            hour_reason, day_reason = (reason, reason) if reason != "budget" else ("hour-budget", "day-budget")
            refusal = window.refusal(now, per_hour, per_day, hour_reason, day_reason)
            if refusal is not None:
                self.refused[refusal.reason] += 1
                return refusal
        return None

    def admit(self, address: str | None, now: float) -> tuple:
        """Count one case for this client and the node (call right after `refusal`
        said None, with no await between). Give the ticket back if the creation fails."""
        windows = tuple(window for window, *_ in self._checks(address))
        for window in windows:
            window.times.append(now)
        return windows, now

    def give_back(self, ticket: tuple) -> None:
        if not ticket:
            return
        windows, when = ticket
        for window in windows:
            try:
                window.times.remove(when)
            except ValueError:
                pass

    def pow_required(self, now: float) -> bool:
        return self.node.count(now, HOUR) >= self.policy.proof_of_work_above_per_hour

    def take_counts(self) -> tuple[dict[str, int], int]:
        """Refusals and proofs of work asked since the last call (for the hourly row)."""
        refused, asked = dict(self.refused), self.pow_asked
        self.refused.clear()
        self.pow_asked = 0
        return refused, asked


def creation_report(db, policy, now: float) -> dict:
    """For `ncii-node status`: cases stored this UTC hour and in the last 24, the limits'
    refusals and the proofs of work asked (from `case_creations`), and the budget."""
    from node.store import cases as store

    hour = int(now // HOUR)
    rows = store.creation_counts(db, hour - 23)
    this_hour = [r for r in rows if r[0] == hour]
    total = [sum(r[i] for r in rows) for i in range(1, 6)]
    return {
        "created_this_hour": this_hour[0][1] if this_hour else 0,
        "created_last_24_hours": total[0],
        "refused_last_24_hours": {"address": total[1], "network": total[2], "budget": total[3]},
        "proof_of_work_asked_last_24_hours": total[4],
        "per_hour": policy.per_hour,
        "per_day": policy.per_day,
        "proof_of_work_above_per_hour": policy.proof_of_work_above_per_hour,
        "states": store.counts(db),
    }
