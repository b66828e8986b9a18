"""The replay cache of signed reads: every accepted (reader, nonce), refused a second
time while its signature could still pass the freshness check -- also after a restart.

Why it is cheap (spec/parts/readaccess.md, "Replay protection"): a signature is fresh
for at most MAX_SIGNATURE_LIFETIME + MAX_CLOCK_SKEW seconds (40 s), so a nonce is kept
about that long, as an 8-byte keyed digest in a per-second bucket (~80 bytes of memory).
The default bound, 500,000 live nonces, therefore sustains 12,000 signed reads a second:
more than one core can verify Ed25519 signatures (about 10,000 a second here), so the
cache is never what limits readers.

Why it survives a restart without an fsync per read: each accepted nonce is appended
(12 bytes, one write(2), never fsynced) to DIR/replay.journal, whose header records the
kernel's boot ID. Data written to a file stays in the page cache when the process dies,
even by SIGKILL; only a crash of the machine itself can lose it, and that changes the
boot ID. So at start:

  * same boot ID: the journal is complete; its live nonces are loaded;
  * another boot ID, or a journal that cannot be read: nonces may be missing, so the
    node refuses every signature created before `not_before` = start + MAX_CLOCK_SKEW
    (a signature the previous process accepted was created before it stopped, plus at
    most the skew). A machine that rebooted was down longer than that anyway;
  * no journal at all: the node never served with one (a new data directory).

On PostgreSQL the journal is rows shared by every `serve` process of the node
(node/store/replay.py): a nonce this cache has not seen but the database holds was
accepted by another process, and is refused the same way.

The journal is rewritten with only its live nonces (same key, atomic rename) when it
holds four times as many records as are live. Invariants: a nonce is recorded only
after its signature verified; it is remembered until `forget_at`, the first second at
which a request carrying it can no longer be fresh; the cache never holds more than
`max_entries` live nonces (503 rather than forgetting one), nor one reader more than
`max_per_reader`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import struct
from pathlib import Path

from protocol.errors import ProtocolError

log = logging.getLogger(__name__)

#: The journal's file name in the data directory.
REPLAY_JOURNAL = "replay.journal"
#: Default bound on live nonces (~40 MB at worst).
DEFAULT_REPLAY_CACHE_ENTRIES = 500_000
JOURNAL_MAGIC = b"ncii-node replay journal v1\n"
_RECORD = struct.Struct(">IQ")  # forget_at (whole seconds), digest
_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_KEY_SIZE = 16
_BOOT_ID_SIZE = 36
_HEADER_SIZE = len(JOURNAL_MAGIC) + _BOOT_ID_SIZE + 1 + _KEY_SIZE


_USED = "this signature nonce was already used; sign each request afresh with a new nonce"


class ReplayRefused(ProtocolError):
    """Raised by ReplayCache; node.readaccess turns it into its own errors."""

    def __init__(self, message: str, full: bool):
        super().__init__(message)
        self.full = full


def boot_id() -> str | None:
    """The kernel's ID of this boot (Linux), or None where there is none."""
    try:
        text = _BOOT_ID_PATH.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == _BOOT_ID_SIZE else None


class ReplayCache:
    """Nonces accepted recently, each until its `forget_at` (see the module docstring).
    `not_before`: signatures created earlier are refused (set after an unclean start)."""

    def __init__(self, max_entries: int = DEFAULT_REPLAY_CACHE_ENTRIES, max_per_reader: int | None = None,
                 *, compact_after: int = 100_000):
        self.max_entries = max_entries
        self.compact_after = compact_after  # journal records below which it is never rewritten
        self.max_per_reader = max_per_reader if max_per_reader is not None else max(1, max_entries // 2)
        self.not_before = 0.0
        self._key = secrets.token_bytes(_KEY_SIZE)
        self._live: set[int] = set()
        self._buckets: dict[int, tuple[list[int], dict[str, int]]] = {}  # forget_at -> digests, per reader
        self._per_reader: dict[str, int] = {}
        self._oldest = 0
        self._journal: _Journal | None = None

    def __len__(self) -> int:
        return len(self._live)

    def _digest(self, keyid: str, nonce: str) -> int:
        data = keyid.encode("utf-8", "replace") + b"\0" + nonce.encode("utf-8", "replace")
        return int.from_bytes(hashlib.blake2b(data, key=self._key, digest_size=8).digest(), "big")

    def _expire(self, now: float) -> None:
        second = int(now)
        if second < self._oldest or not self._buckets:
            return
        for forget_at in [s for s in self._buckets if s <= second]:
            digests, readers = self._buckets.pop(forget_at)
            self._live.difference_update(digests)
            for keyid, n in readers.items():
                left = self._per_reader.get(keyid, 0) - n
                if left > 0:
                    self._per_reader[keyid] = left
                else:
                    self._per_reader.pop(keyid, None)
        self._oldest = min(self._buckets, default=second + 1)

    def check_and_add(self, keyid: str, nonce: str, forget_at: float, now: float) -> None:
        """Record (keyid, nonce) until `forget_at`; raise ReplayRefused if it was
        recorded before (full=False) or there is no room (full=True)."""
        self._expire(now)
        digest = self._digest(keyid, nonce)
        if digest in self._live:
            raise ReplayRefused(_USED, full=False)
        if self._per_reader.get(keyid, 0) >= self.max_per_reader:
            raise ReplayRefused("this reader has too many signed requests in flight; slow down and retry in a "
                                "few seconds", full=True)
        if len(self._live) >= self.max_entries:
            raise ReplayRefused("too many signed requests in flight; retry in a few seconds", full=True)
        # Recorded before it counts as accepted. A shared journal (several processes of one
        # node on one database) says whether another process accepted it first.
        if self._journal is not None and not self._journal.append(int(forget_at), digest):
            raise ReplayRefused(_USED, full=False)
        self._remember(digest, int(forget_at), keyid)

    def _remember(self, digest: int, forget_at: int, keyid: str) -> None:
        self._live.add(digest)
        digests, readers = self._buckets.setdefault(forget_at, ([], {}))
        digests.append(digest)
        readers[keyid] = readers.get(keyid, 0) + 1
        self._per_reader[keyid] = self._per_reader.get(keyid, 0) + 1
        self._oldest = min(self._oldest, forget_at) if self._oldest else forget_at
        if self._journal is not None and self._journal.records > max(4 * len(self._live), self.compact_after):
            self._journal.rewrite(self._entries())

    def _entries(self) -> list[tuple[int, int]]:
        return [(forget_at, d) for forget_at, (digests, _) in self._buckets.items() for d in digests]

    # ------------------------------------------------------------------ persistence
    def open_journal(self, where, now: float, skew: float) -> str:
        """Load the journal (see the module docstring) and keep appending to it: `where` is
        DIR/replay.journal, or a database's journal (node/store/replay.py DatabaseJournals,
        where the database server's start time plays the boot ID). Returns a sentence for
        the operator's log saying what was done."""
        journals = FileJournals(Path(where)) if isinstance(where, (str, Path)) else where
        current = journals.boot_id()
        loaded = journals.read()
        if loaded is None:
            outcome = "no replay journal yet (a new data directory): started one"
        elif loaded.boot_id is not None and loaded.boot_id == current and loaded.key is not None:
            self._key = loaded.key
            kept = 0
            for forget_at, digest in loaded.entries:
                if forget_at > now and digest not in self._live and len(self._live) < self.max_entries:
                    self._remember(digest, forget_at, "")
                    kept += 1
            self._per_reader.pop("", None)  # loaded nonces count towards the total only
            outcome = f"replay journal loaded: {kept} signed read(s) of the last seconds stay refused"
        else:
            self.not_before = now + skew
            outcome = (f"the replay journal is from another boot of this machine or unreadable: signatures "
                       f"created before {int(self.not_before)} (start + {skew:g} s) are refused")
        self._journal = journals.create(self._key, current, self._entries())
        if self._journal.key != self._key:
            # A shared journal another process started with this boot a moment ago (both
            # found none): take its key, so that every process computes the same digests.
            self._key = self._journal.key
            self._forget_all()
        return outcome

    def _forget_all(self) -> None:
        self._live.clear()
        self._buckets.clear()
        self._per_reader.clear()
        self._oldest = 0

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


class FileJournals:
    """The journal as a file, DIR/replay.journal (boot ID: the kernel's)."""

    def __init__(self, path: Path):
        self.path = path

    def boot_id(self) -> str | None:
        return boot_id()

    def read(self) -> "_Journal.Loaded | None":
        return _Journal.read(self.path)

    def create(self, key: bytes, boot: str | None, entries: list[tuple[int, int]]) -> "_Journal":
        return _Journal.create(self.path, key, boot, entries)


class _Journal:
    """DIR/replay.journal: header (magic, boot ID, key), then 12-byte records."""

    def __init__(self, path: Path, fd: int, records: int, key: bytes, boot: str | None):
        self.path, self.fd, self.records, self.key, self.boot = path, fd, records, key, boot

    class Loaded:
        def __init__(self, boot_id: str | None, key: bytes | None, entries: list[tuple[int, int]]):
            self.boot_id, self.key, self.entries = boot_id, key, entries

    @staticmethod
    def read(path: Path) -> "_Journal.Loaded | None":
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return _Journal.Loaded(None, None, [])
        if len(data) < _HEADER_SIZE or not data.startswith(JOURNAL_MAGIC):
            return _Journal.Loaded(None, None, [])
        at = len(JOURNAL_MAGIC)
        boot = data[at:at + _BOOT_ID_SIZE].decode("ascii", "replace")
        key = data[at + _BOOT_ID_SIZE + 1:_HEADER_SIZE]
        body = data[_HEADER_SIZE:]
        usable = len(body) - len(body) % _RECORD.size  # a record cut short by a crash is dropped
        return _Journal.Loaded(None if boot == "-" * _BOOT_ID_SIZE else boot, key,
                               list(_RECORD.iter_unpack(body[:usable])))

    @staticmethod
    def _header(key: bytes, boot: str | None) -> bytes:
        return JOURNAL_MAGIC + (boot or "-" * _BOOT_ID_SIZE).encode("ascii") + b"\n" + key

    @classmethod
    def create(cls, path: Path, key: bytes, boot: str | None, entries: list[tuple[int, int]]) -> "_Journal":
        """Write a new journal (atomically, fsynced once: it must exist after a crash of
        the machine too, so that the next start knows it has to be careful)."""
        from node.datadir import write_atomic

        path = Path(path)
        write_atomic(path, cls._header(key, boot) + b"".join(_RECORD.pack(f, d) for f, d in entries), mode=0o600)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        return cls(path, fd, len(entries), key, boot)

    def append(self, forget_at: int, digest: int) -> bool:
        """Record a nonce; True (the file is this process's alone: the cache decided)."""
        os.write(self.fd, _RECORD.pack(forget_at, digest))  # no fsync: see the module docstring
        self.records += 1
        return True

    def rewrite(self, entries: list[tuple[int, int]]) -> None:
        """Only the live records, same key and boot ID; renamed over the old file."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(self._header(self.key, self.boot) + b"".join(_RECORD.pack(f_, d) for f_, d in entries))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.records = len(entries)
        log.debug("replay journal rewritten with %d live record(s)", len(entries))

    def close(self) -> None:
        os.close(self.fd)
