"""Tables of the witness area: cosigning other logs, being witnessed, split-view evidence.

Witness role (this node cosigns other logs' checkpoints, C2SP tlog-witness):
- `witness_known_logs(origin, vkey, name, added_at)`: the logs this witness accepts,
  with the verifier key(s) it trusts for each origin (a log may have several keys).
- `witness_latest(origin, size, root_hash, note, cosigned_at)`: per origin, the latest
  checkpoint this witness cosigned; `note` holds only lines someone verified: the
  checkpoint text, the signature lines of the log's trusted keys, and our cosignature,
  as monitors read it (GET /<hex SHA-256 of origin>/checkpoint). The check of an add-checkpoint request
  against this row and the update of the row happen in ONE `BEGIN IMMEDIATE`
  transaction (`witness_update`), so two concurrent requests can never roll it back.
- `witness_refusals(id, origin, status, reason, body, received_at)`: validly signed
  submissions that were refused (422) -- possible evidence of misbehaviour,
  kept for people to look at (the newest MAX_REFUSALS only).
- `witness_log_rates(origin, interval)`: the add-checkpoint rate a witnessed log
  declared (at most one request every `interval` seconds), published in /node.json.

Publishing role (this node's own log is witnessed):
- `log_witnesses(vkey, name, url, added_at, last_size, last_line, last_error, last_attempt)`:
  the witnesses this node submits its checkpoints to; per witness the size of the
  latest checkpoint it cosigned for us and that cosignature line.
- `log_witness_policy(id = 1, k)`: how many cosignatures a checkpoint should carry.

Following role (this node checks other logs' cosignatures):
- `follow_policies(origin, policy, source)`: the C2SP tlog-policy (file bytes) whose
  quorum a checkpoint of `origin` must meet before this node applies it; `source` is
  "flags" (made from `witness require -k K --witness ...`) or "file" (`--policy FILE`).
  (Version 1 kept k-of-n flags in `follow_witness_policy`; version 2 turned each row
  into the policy it means.)

Every role:
- `seen_checkpoints(origin, size, root_hash, note, source, seen_at)`: the latest
  verified checkpoint of each origin this node has seen (as witness, follower, auditor
  or publisher), shared with others at GET /witness/seen so split views come to light.
- `split_view_evidence(id, origin, digest, evidence, created_at)`: portable evidence
  files (JSON, see node/witness/evidence.py), each stored once.

This module is the only code that touches these tables.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import sqlite_utils

AREA = "witness"
MAX_REFUSALS = 1000


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE witness_known_logs (
        origin TEXT NOT NULL,
        vkey TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        added_at REAL NOT NULL,
        PRIMARY KEY (origin, vkey)
    )""")
    db.execute("""CREATE TABLE witness_latest (
        origin TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        note BLOB NOT NULL,
        cosigned_at REAL NOT NULL
    )""")
    db.execute("""CREATE TABLE witness_refusals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL,
        body BLOB NOT NULL,
        received_at REAL NOT NULL
    )""")
    db.execute("""CREATE TABLE log_witnesses (
        vkey TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        url TEXT NOT NULL,
        added_at REAL NOT NULL,
        last_size INTEGER,
        last_line TEXT,
        last_error TEXT,
        last_attempt REAL
    )""")
    db.execute("""CREATE TABLE log_witness_policy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        k INTEGER NOT NULL
    )""")
    db.execute("""CREATE TABLE follow_witness_policy (
        origin TEXT PRIMARY KEY,
        witnesses TEXT NOT NULL,
        k INTEGER NOT NULL
    )""")
    db.execute("""CREATE TABLE seen_checkpoints (
        origin TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        note BLOB NOT NULL,
        source TEXT NOT NULL,
        seen_at REAL NOT NULL
    )""")
    db.execute("""CREATE TABLE split_view_evidence (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        digest TEXT NOT NULL UNIQUE,
        evidence TEXT NOT NULL,
        created_at REAL NOT NULL
    )""")


def _v2(db: sqlite_utils.Database) -> None:
    from protocol.policy import Policy

    db.execute("""CREATE TABLE follow_policies (
        origin TEXT PRIMARY KEY,
        policy BLOB NOT NULL,
        source TEXT NOT NULL
    )""")
    for origin, witnesses, k in db.execute("SELECT origin, witnesses, k FROM follow_witness_policy").fetchall():
        policy = Policy.k_of_n(json.loads(witnesses), k)
        db.execute("INSERT INTO follow_policies (origin, policy, source) VALUES (?, ?, 'flags')",
                   (origin, policy.to_bytes()))
    db.execute("DROP TABLE follow_witness_policy")
    db.execute("""CREATE TABLE witness_log_rates (
        origin TEXT PRIMARY KEY,
        interval REAL NOT NULL
    )""")
    _keep_verified_lines(db)


def _keep_verified_lines(db: sqlite_utils.Database) -> None:
    """Version 1 stored the submitted note whole, lines of unknown keys included. Keep
    the lines of the log's trusted keys that verify, and the last line (our own
    cosignature: add_signatures always appended it last)."""
    from protocol.errors import ProtocolError
    from protocol.note import Note, Verifier, open_note, parse_note

    for origin, note in db.execute("SELECT origin, note FROM witness_latest").fetchall():
        try:
            parsed = parse_note(note)
            keys = [Verifier.from_vkey(v) for v in known_vkeys(db, origin)]
            opened = open_note(note, keys)
        except ProtocolError:
            continue  # nothing we can vouch for: leave the row as it was
        verified = {(v.name, v.key_id) for v in opened.verified_by}
        kept = [sig for sig in parsed.signatures[:-1] if (sig.name, sig.key_id) in verified]
        db.execute("UPDATE witness_latest SET note = ? WHERE origin = ?",
                   (Note(parsed.text, kept + parsed.signatures[-1:]).to_bytes(), origin))


MIGRATIONS = [_v1, _v2]


# -- witness role: known logs ----------------------------------------------------------

@dataclass(frozen=True)
class KnownLog:
    origin: str
    vkey: str
    name: str
    added_at: float


def add_known_log(db: sqlite_utils.Database, origin: str, vkey: str, name: str = "") -> bool:
    """Trust `vkey` for checkpoints of `origin`; False if it was already trusted."""
    with db.atomic():
        if db.execute("SELECT 1 FROM witness_known_logs WHERE origin = ? AND vkey = ?",
                      (origin, vkey)).fetchone():
            db.execute("UPDATE witness_known_logs SET name = ? WHERE origin = ? AND vkey = ?",
                       (name, origin, vkey))
            return False
        db.execute("INSERT INTO witness_known_logs (origin, vkey, name, added_at) VALUES (?, ?, ?, ?)",
                   (origin, vkey, name, time.time()))
        return True


def remove_known_log(db: sqlite_utils.Database, origin_or_vkey: str) -> int:
    """Forget every key of an origin (or one key); the cosigned state is kept, so
    adding the log back later cannot roll it back."""
    with db.atomic():
        n = db.execute("DELETE FROM witness_known_logs WHERE origin = ?", (origin_or_vkey,)).rowcount
        if n == 0:
            n = db.execute("DELETE FROM witness_known_logs WHERE vkey = ?", (origin_or_vkey,)).rowcount
        return n


def list_known_logs(db: sqlite_utils.Database) -> list[KnownLog]:
    return [KnownLog(*r) for r in db.execute(
        "SELECT origin, vkey, name, added_at FROM witness_known_logs ORDER BY origin, added_at")]


def known_vkeys(db: sqlite_utils.Database, origin: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT vkey FROM witness_known_logs WHERE origin = ? ORDER BY vkey", (origin,))]


# -- witness role: latest cosigned checkpoint --------------------------------------------

@dataclass(frozen=True)
class CosignedCheckpoint:
    origin: str
    size: int
    root_hash: bytes
    note: bytes          # the log's note with our cosignature line(s) appended
    cosigned_at: float


def witness_latest(db: sqlite_utils.Database, origin: str) -> CosignedCheckpoint | None:
    row = db.execute("SELECT origin, size, root_hash, note, cosigned_at FROM witness_latest "
                     "WHERE origin = ?", (origin,)).fetchone()
    return CosignedCheckpoint(*row) if row else None


def witness_latest_by_origin_hash(db: sqlite_utils.Database, origin_hash: str) -> CosignedCheckpoint | None:
    """The row whose origin's SHA-256, in lowercase hex, is `origin_hash` (C2SP
    tlog-witness monitoring path). A witness knows few logs: a scan is enough."""
    for (origin,) in db.execute("SELECT origin FROM witness_latest"):
        if hashlib.sha256(origin.encode("utf-8")).hexdigest() == origin_hash:
            return witness_latest(db, origin)
    return None


def all_witness_latest(db: sqlite_utils.Database) -> list[CosignedCheckpoint]:
    return [CosignedCheckpoint(*r) for r in db.execute(
        "SELECT origin, size, root_hash, note, cosigned_at FROM witness_latest ORDER BY origin")]


def witness_update(db: sqlite_utils.Database, origin: str, decide):
    """Run `decide(stored: CosignedCheckpoint | None)` and apply its decision in one
    BEGIN IMMEDIATE transaction: no other connection can change the row between the
    read and the write (C2SP tlog-witness requires the check and the store to be
    atomic). `decide` returns (result, new_row) where new_row is None (store nothing)
    or (size, root_hash, note, cosigned_at). Returns `result`."""
    with db.atomic():  # BEGIN IMMEDIATE (node.store.NodeDatabase)
        stored = witness_latest(db, origin)
        result, new_row = decide(stored)
        if new_row is not None:
            size, root_hash, note, cosigned_at = new_row
            db.execute(
                "INSERT INTO witness_latest (origin, size, root_hash, note, cosigned_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root_hash = excluded.root_hash, "
                "note = excluded.note, cosigned_at = excluded.cosigned_at",
                (origin, size, root_hash, note, cosigned_at))
        return result


def record_refusal(db: sqlite_utils.Database, origin: str, status: int, reason: str, body: bytes) -> None:
    with db.atomic():
        db.execute("INSERT INTO witness_refusals (origin, status, reason, body, received_at) "
                   "VALUES (?, ?, ?, ?, ?)", (origin, status, reason, body, time.time()))
        db.execute("DELETE FROM witness_refusals WHERE id <= (SELECT MAX(id) FROM witness_refusals) - ?",
                   (MAX_REFUSALS,))


def list_refusals(db: sqlite_utils.Database, limit: int = 100) -> list[dict]:
    return [dict(zip(("origin", "status", "reason", "received_at"), r)) for r in db.execute(
        "SELECT origin, status, reason, received_at FROM witness_refusals ORDER BY id DESC LIMIT ?", (limit,))]


# -- publishing role: our witnesses and policy --------------------------------------------

@dataclass(frozen=True)
class LogWitness:
    vkey: str
    name: str
    url: str
    added_at: float
    last_size: int | None
    last_line: str | None
    last_error: str | None
    last_attempt: float | None


_LOG_WITNESS_COLUMNS = "vkey, name, url, added_at, last_size, last_line, last_error, last_attempt"


def add_log_witness(db: sqlite_utils.Database, vkey: str, url: str, name: str = "") -> bool:
    with db.atomic():
        if db.execute("SELECT 1 FROM log_witnesses WHERE vkey = ?", (vkey,)).fetchone():
            db.execute("UPDATE log_witnesses SET url = ?, name = ? WHERE vkey = ?", (url, name, vkey))
            return False
        db.execute("INSERT INTO log_witnesses (vkey, name, url, added_at) VALUES (?, ?, ?, ?)",
                   (vkey, name, url, time.time()))
        return True


def remove_log_witness(db: sqlite_utils.Database, vkey_or_name: str) -> int:
    with db.atomic():
        n = db.execute("DELETE FROM log_witnesses WHERE vkey = ?", (vkey_or_name,)).rowcount
        if n == 0:
            n = db.execute("DELETE FROM log_witnesses WHERE name = ? AND name != ''", (vkey_or_name,)).rowcount
        return n


def list_log_witnesses(db: sqlite_utils.Database) -> list[LogWitness]:
    return [LogWitness(*r) for r in db.execute(
        f"SELECT {_LOG_WITNESS_COLUMNS} FROM log_witnesses ORDER BY added_at, vkey")]


def record_witness_result(db: sqlite_utils.Database, vkey: str, *, size: int | None = None,
                          line: str | None = None, error: str | None = None,
                          known_size: int | None = None) -> None:
    """After a submission: a cosignature (size + line), or an error; `known_size` is
    the size a witness said it holds (409), kept so the next attempt sends the right
    old size. A cosignature never moves last_size backwards."""
    now = time.time()
    with db.atomic():
        if line is not None:
            db.execute("UPDATE log_witnesses SET last_size = ?, last_line = ?, last_error = NULL, "
                       "last_attempt = ? WHERE vkey = ? AND (last_size IS NULL OR last_size <= ?)",
                       (size, line, now, vkey, size))
        else:
            db.execute("UPDATE log_witnesses SET last_error = ?, last_attempt = ? WHERE vkey = ?",
                       (error, now, vkey))
            if known_size is not None:
                db.execute("UPDATE log_witnesses SET last_size = ?, last_line = NULL WHERE vkey = ?",
                           (known_size, vkey))


def get_log_policy(db: sqlite_utils.Database) -> int | None:
    row = db.execute("SELECT k FROM log_witness_policy WHERE id = 1").fetchone()
    return row[0] if row else None


def set_log_policy(db: sqlite_utils.Database, k: int) -> None:
    with db.atomic():
        db.execute("INSERT INTO log_witness_policy (id, k) VALUES (1, ?) "
                   "ON CONFLICT(id) DO UPDATE SET k = excluded.k", (k,))


# -- following role: the policy a followed origin's checkpoints must meet ------------------

def set_follow_policy(db: sqlite_utils.Database, origin: str, policy: bytes, source: str) -> None:
    """Store the C2SP tlog-policy (already parsed and checked by the caller) for `origin`."""
    with db.atomic():
        db.execute("INSERT INTO follow_policies (origin, policy, source) VALUES (?, ?, ?) "
                   "ON CONFLICT(origin) DO UPDATE SET policy = excluded.policy, source = excluded.source",
                   (origin, policy, source))


def get_follow_policy(db: sqlite_utils.Database, origin: str) -> bytes | None:
    row = db.execute("SELECT policy FROM follow_policies WHERE origin = ?", (origin,)).fetchone()
    return bytes(row[0]) if row else None


def remove_follow_policy(db: sqlite_utils.Database, origin: str) -> int:
    with db.atomic():
        return db.execute("DELETE FROM follow_policies WHERE origin = ?", (origin,)).rowcount


def list_follow_policies(db: sqlite_utils.Database) -> list[tuple[str, bytes, str]]:
    return [(r[0], bytes(r[1]), r[2]) for r in db.execute(
        "SELECT origin, policy, source FROM follow_policies ORDER BY origin")]


# -- witness role: the add-checkpoint rate each witnessed log declared ----------------------

def set_log_rate(db: sqlite_utils.Database, origin: str, interval: float | None) -> None:
    with db.atomic():
        if interval is None:
            db.execute("DELETE FROM witness_log_rates WHERE origin = ?", (origin,))
        else:
            db.execute("INSERT INTO witness_log_rates (origin, interval) VALUES (?, ?) "
                       "ON CONFLICT(origin) DO UPDATE SET interval = excluded.interval", (origin, interval))


def log_rate(db: sqlite_utils.Database, origin: str) -> float | None:
    row = db.execute("SELECT interval FROM witness_log_rates WHERE origin = ?", (origin,)).fetchone()
    return row[0] if row else None


def log_rates(db: sqlite_utils.Database) -> dict[str, float]:
    return {r[0]: r[1] for r in db.execute("SELECT origin, interval FROM witness_log_rates")}


# -- every role: checkpoints seen, evidence ---------------------------------------------------

@dataclass(frozen=True)
class SeenCheckpoint:
    origin: str
    size: int
    root_hash: bytes
    note: bytes
    source: str
    seen_at: float


def record_seen(db: sqlite_utils.Database, origin: str, size: int, root_hash: bytes, note: bytes,
                source: str) -> None:
    """Remember a verified checkpoint if it is at least as large as the one kept.
    (Consistency is the caller's business: this is a record, not a check.)"""
    with db.atomic():
        db.execute(
            "INSERT INTO seen_checkpoints (origin, size, root_hash, note, source, seen_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root_hash = excluded.root_hash, "
            "note = excluded.note, source = excluded.source, seen_at = excluded.seen_at "
            "WHERE excluded.size >= seen_checkpoints.size",
            (origin, size, root_hash, note, source, time.time()))


def seen_checkpoint(db: sqlite_utils.Database, origin: str) -> SeenCheckpoint | None:
    row = db.execute("SELECT origin, size, root_hash, note, source, seen_at FROM seen_checkpoints "
                     "WHERE origin = ?", (origin,)).fetchone()
    return SeenCheckpoint(*row) if row else None


def list_seen(db: sqlite_utils.Database) -> list[SeenCheckpoint]:
    return [SeenCheckpoint(*r) for r in db.execute(
        "SELECT origin, size, root_hash, note, source, seen_at FROM seen_checkpoints ORDER BY origin")]


def store_evidence(db: sqlite_utils.Database, origin: str, evidence_json: str) -> bool:
    """Keep an evidence file; False if the same evidence was already stored."""
    digest = hashlib.sha256(evidence_json.encode("utf-8")).hexdigest()
    with db.atomic():
        cur = db.execute("INSERT OR IGNORE INTO split_view_evidence (origin, digest, evidence, created_at) "
                         "VALUES (?, ?, ?, ?)", (origin, digest, evidence_json, time.time()))
        return cur.rowcount == 1


def list_evidence(db: sqlite_utils.Database) -> list[tuple[int, str, str, float]]:
    return [tuple(r) for r in db.execute(
        "SELECT id, origin, evidence, created_at FROM split_view_evidence ORDER BY id")]
