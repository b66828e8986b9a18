"""Tables of the federation membership list this node follows (node/federation/).

- `federation_subscription`: at most one row: the list's URL, the list keys and how
  many of them must sign (quorum), how often it is fetched, whether a removed member
  is unlinked at once; the federation's name and the serial and signed note of the
  newest version accepted; the last check and its error.
- `federation_lists(serial)`: every version accepted, its signed note byte for byte
  (what the node believed, and when), and the checkpoint of the list's log it was
  accepted under (NULL for a list without a log). Serials only grow.
- v2: the subscription's `checkpoint` (the list log's checkpoint accepted last: every
  later one must be consistent with it) and `fork` (JSON: a split view of the list's
  log was found: both checkpoints, the reason, the evidence file or why there is none;
  while set, nothing is accepted from the list); `witnesses` (cosigner keys, one a
  line) of which `witness_quorum` must have cosigned every checkpoint of the list's log.
- `federation_applied(origin)`: the members this node has set up from the list, as
  they were when set up: the difference with the newest list is what is pending.
- `federation_rejected(change_id)`: changes the operator rejected (not shown again).

Contract of FederationRepository (`db.federation`): `accept` runs inside the caller's
transaction, which first reads `subscription()` and checks the serial: so two
processes (the running node, a CLI `federation update`) cannot both accept, or go
back. Every other writing call is a transaction of its own, or joins the caller's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import sqlite_utils

AREA = "federation"

_MEMBER_COLUMNS = ("origin", "role", "url", "name", "log_vkey", "request_vkey")


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE federation_subscription (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        url TEXT NOT NULL,
        list_vkeys TEXT NOT NULL,
        quorum INTEGER NOT NULL,
        interval REAL NOT NULL,
        auto_remove INTEGER NOT NULL DEFAULT 0,
        federation TEXT,
        serial INTEGER,
        note BLOB,
        accepted_at REAL,
        checked_at REAL,
        last_error TEXT,
        last_error_at REAL,
        added_at REAL NOT NULL)""")
    db.execute("CREATE TABLE federation_lists (serial INTEGER PRIMARY KEY, note BLOB NOT NULL, "
               "accepted_at REAL NOT NULL)")
    db.execute("CREATE TABLE federation_applied (origin TEXT PRIMARY KEY, role TEXT NOT NULL, url TEXT NOT NULL, "
               "name TEXT NOT NULL, log_vkey TEXT NOT NULL, request_vkey TEXT NOT NULL, applied_at REAL NOT NULL)")
    db.execute("CREATE TABLE federation_rejected (change_id TEXT PRIMARY KEY, rejected_at REAL NOT NULL)")


def _v2(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE federation_subscription ADD COLUMN checkpoint BLOB")
    db.execute("ALTER TABLE federation_subscription ADD COLUMN fork TEXT")
    db.execute("ALTER TABLE federation_lists ADD COLUMN checkpoint BLOB")
    db.execute("ALTER TABLE federation_subscription ADD COLUMN witnesses TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE federation_subscription ADD COLUMN witness_quorum INTEGER NOT NULL DEFAULT 0")


MIGRATIONS = [_v1, _v2]


@dataclass(frozen=True)
class Subscription:
    url: str
    list_vkeys: tuple[str, ...]
    quorum: int
    interval: float
    auto_remove: bool
    federation: str | None
    serial: int | None
    note: bytes | None
    accepted_at: float | None
    checked_at: float | None
    last_error: str | None
    last_error_at: float | None
    checkpoint: bytes | None = None
    fork: dict | None = None
    witnesses: tuple[str, ...] = ()
    witness_quorum: int = 0


class FederationRepository:
    """The followed membership list (contract above)."""

    def __init__(self, db):
        self.db = db

    def subscribe(self, url: str, list_vkeys: list[str], quorum: int, interval: float, auto_remove: bool,
                  witnesses: list[str] = (), witness_quorum: int = 0) -> None:
        """Follow the list at `url`; a second call changes where and how, keeping the
        newest serial and checkpoint accepted (so a subscription changed back cannot
        roll back)."""
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO federation_subscription (id, url, list_vkeys, quorum, interval, auto_remove, added_at, "
                "witnesses, witness_quorum) "
                "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET url = excluded.url, "
                "list_vkeys = excluded.list_vkeys, quorum = excluded.quorum, interval = excluded.interval, "
                "auto_remove = excluded.auto_remove, witnesses = excluded.witnesses, "
                "witness_quorum = excluded.witness_quorum",
                (url, "\n".join(list_vkeys), quorum, interval, int(auto_remove), time.time(), "\n".join(witnesses),
                 witness_quorum))

    def subscription(self) -> Subscription | None:
        row = self.db.execute(
            "SELECT url, list_vkeys, quorum, interval, auto_remove, federation, serial, note, accepted_at, "
            "checked_at, last_error, last_error_at, checkpoint, fork, witnesses, witness_quorum "
            "FROM federation_subscription WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        row = list(row)
        for i in (7, 12):  # BLOBs come back as memoryview from PostgreSQL
            row[i] = bytes(row[i]) if row[i] is not None else None
        return Subscription(row[0], tuple(row[1].split("\n")), row[2], row[3], bool(row[4]), *row[5:13],
                            json.loads(row[13]) if row[13] else None, tuple(filter(None, row[14].split("\n"))),
                            row[15])

    def accept(self, federation: str, serial: int, note: bytes, now: float | None = None,
               checkpoint: bytes | None = None) -> None:
        """Inside the caller's transaction: `note` is the newest version (accepted
        under the list log's `checkpoint`, if the list has a log)."""
        now = time.time() if now is None else now
        self.db.execute("UPDATE federation_subscription SET federation = ?, serial = ?, note = ?, accepted_at = ?, "
                        "checked_at = ?, last_error = NULL WHERE id = 1", (federation, serial, note, now, now))
        self.db.execute("INSERT INTO federation_lists (serial, note, accepted_at, checkpoint) VALUES (?, ?, ?, ?)",
                        (serial, note, now, checkpoint))
        if checkpoint is not None:
            self.set_checkpoint(checkpoint)

    def set_checkpoint(self, checkpoint: bytes) -> None:
        """Joins the caller's transaction (which checked consistency with the one kept)."""
        with self.db.atomic():
            self.db.execute("UPDATE federation_subscription SET checkpoint = ? WHERE id = 1", (checkpoint,))

    def record_fork(self, fork: dict, error: str, now: float | None = None) -> None:
        """A split view of the list's log: kept, and nothing accepted from it any more."""
        now = time.time() if now is None else now
        with self.db.atomic():
            self.db.execute("UPDATE federation_subscription SET fork = ?, last_error = ?, last_error_at = ? "
                            "WHERE id = 1", (json.dumps(fork), error, now))

    def record_check(self, error: str | None, now: float | None = None) -> None:
        """The list was fetched: unchanged (error None) or refused (why)."""
        now = time.time() if now is None else now
        with self.db.atomic():
            if error is None:
                self.db.execute("UPDATE federation_subscription SET checked_at = ?, last_error = NULL WHERE id = 1",
                                (now,))
            else:
                self.db.execute("UPDATE federation_subscription SET last_error = ?, last_error_at = ? WHERE id = 1",
                                (error, now))

    def unsubscribe(self) -> bool:
        """Follow the list no more: what was set up from it stays (the operator's now);
        the versions accepted stay too, as the record of what was believed."""
        with self.db.atomic():
            found = self.db.execute("DELETE FROM federation_subscription").rowcount > 0
            self.db.execute("DELETE FROM federation_applied")
            self.db.execute("DELETE FROM federation_rejected")
            return found

    def versions(self) -> list[tuple[int, float]]:
        return self.db.execute("SELECT serial, accepted_at FROM federation_lists ORDER BY serial").fetchall()

    def applied(self) -> dict[str, dict[str, str]]:
        """origin -> the member's fields as set up (node/invitation.py Invitation's)."""
        rows = self.db.execute(f"SELECT {', '.join(_MEMBER_COLUMNS)} FROM federation_applied ORDER BY origin")
        return {row[0]: dict(zip(_MEMBER_COLUMNS, row)) for row in rows}

    def set_applied(self, member: dict[str, str]) -> None:
        """Joins the caller's transaction: the member as now set up."""
        with self.db.atomic():
            self.db.execute(f"INSERT INTO federation_applied ({', '.join(_MEMBER_COLUMNS)}, applied_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                            + ", ".join(f"{c} = excluded.{c}" for c in (*_MEMBER_COLUMNS[1:], "applied_at")),
                            (*[member[c] for c in _MEMBER_COLUMNS], time.time()))

    def remove_applied(self, origin: str) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM federation_applied WHERE origin = ?", (origin,))

    def rejected(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT change_id FROM federation_rejected")}

    def reject(self, change_id: str) -> None:
        with self.db.atomic():
            self.db.execute("INSERT OR IGNORE INTO federation_rejected (change_id, rejected_at) VALUES (?, ?)",
                            (change_id, time.time()))
