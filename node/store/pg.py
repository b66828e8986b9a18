"""The PostgreSQL backend of the store seam: the same repositories on a PostgreSQL database.

    db = open_db("postgresql://node@db.example/ncii")   # node.store.open_db dispatches here
    db.log.latest_checkpoint()                           # the very repositories of SQLite
    with db.atomic(): ...                                # one transaction (see below)

Every repository runs unchanged: its statements go through node/store/dialect.py. The
tables are those of the SQLite modules (each area's MIGRATIONS, run by
node.store.migrate and recorded in `schema_versions`), plus the tiles and entry bundles (node/store/dbtiles.py) and the
replay cache (node/store/replay.py), which a SQLite node keeps as files.

Transactions. The repositories' contracts were written against SQLite, where the
outermost transaction takes the database's one write lock up front (BEGIN IMMEDIATE):
a read-then-write never interleaves with another writer. Here the outermost `atomic()`
is a READ COMMITTED transaction that first takes a transaction-scoped advisory lock,
`pg_advisory_xact_lock(WRITER_LOCK)`, the same for every connection to the database:
writers run one at a time, each statement sees every earlier writer's commit, and
readers (plain statements, snapshots) never wait. A single write statement outside any
`atomic()` is run inside one, as SQLite's autocommit write takes the lock too. Writes
to the connection's temporary tables (a follower round's staging) take no lock. We
chose the one lock over SERIALIZABLE because a serialization failure would have to
re-run the caller's Python, which the contracts never asked of their callers.

Durability: commits wait for the WAL flush (synchronous_commit = on), except
`record_checkpoint(durable=False)`, which SQLite's synchronous=NORMAL maps to
synchronous_commit = off: PostgreSQL too flushes its WAL in order, so the argument of
node/store/log.py carries over.

When the server goes away (a restart, a failover, the network), a connection is
broken for good. Each of the node's connections recovers on its own: a database
worker opens a new one for its next call (node/store/worker.py), the lease session and
the listener reconnect with back-off (node/log/lease.py, node/store/pg_changes.py),
and the runtime's connection for short reads on the event loop (`reconnects = True`)
is replaced at the start of its next statement or transaction, never inside one (a
transaction cut by the outage has failed as a whole, and what follows must not run
outside it). Every connection sends TCP keepalives, so a server that went silent
(host down, network cut) is noticed within KEEPALIVE_AFTER seconds, not hours.

Connection URL: `postgresql://user@host:port/dbname` (libpq's), with the password
apart (`PgTarget.password`, from a file or an environment variable: node/config.py),
so that the URL can be shown and logged.
"""

from __future__ import annotations

import contextlib
import logging
import select
from decimal import Decimal

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import NumericLoader

from node.store.dialect import to_postgres
from node.store.repositories import Repositories

log = logging.getLogger(__name__)

#: libpq's TCP keepalives of every connection (idle seconds, interval, count), and the
#: time unacknowledged data may wait (ms): a silent server is given up after about
#: KEEPALIVE_AFTER seconds, whether the connection waits for an answer or sends.
KEEPALIVE_AFTER = 25
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
              "tcp_user_timeout": KEEPALIVE_AFTER * 1000}
#: The advisory lock every writing transaction takes ("ncii" in ASCII).
WRITER_LOCK = 0x6E636969
_WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP")


class PgTarget(str):
    """A PostgreSQL URL (what is shown and logged) and its password, kept apart."""

    password: str | None

    def __new__(cls, url: str, password: str | None = None) -> PgTarget:
        target = super().__new__(cls, url)
        target.password = password
        return target


class _WholeNumbers(NumericLoader):
    """SUM() of integers is `numeric` in PostgreSQL; SQLite gives an int (a float when
    the sum has a fraction): so do we."""

    def load(self, data):
        value = super().load(data)
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value


def raw_connection(target: str, **options) -> psycopg.Connection:
    """A psycopg connection in autocommit mode (transactions are explicit)."""
    conn = psycopg.connect(str(target), password=getattr(target, "password", None), autocommit=True,
                           connect_timeout=10, **{**KEEPALIVES, **options})
    conn.adapters.register_loader("numeric", _WholeNumbers)
    return conn


class _ConnectionView:
    """What the repositories use of `db.conn`: executemany."""

    def __init__(self, db: PgDatabase):
        self._db = db

    def executemany(self, sql: str, rows):
        db = self._db
        statement = to_postgres(sql)
        db._usable()
        if db.in_transaction:
            scope = contextlib.nullcontext()
        else:  # one transaction for the rows, as sqlite3's executemany
            scope = db.atomic() if _takes_lock(statement) else db.raw.transaction()
        with scope, db.raw.cursor() as cursor:
            cursor.executemany(statement, list(rows))
            return cursor


def _takes_lock(statement: str) -> bool:
    head = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
    if head not in _WRITES:
        return False
    return "pg_temp." not in statement and not statement.lstrip().upper().startswith("CREATE TEMP")


class PgDatabase(Repositories):
    """A connection to the node's PostgreSQL database, with the repositories of
    node.store (their contracts kept: see the module docstring)."""

    dialect = "postgresql"
    IntegrityError = psycopg.errors.IntegrityError

    def __init__(self, target: str, raw: psycopg.Connection):
        self.target = target
        self.raw = raw
        self.conn = _ConnectionView(self)
        #: Replace a broken connection between transactions (the runtime's: module docstring).
        self.reconnects = False
        self._depth = 0      # atomic() blocks open on this connection
        self._closed = False

    def _usable(self) -> None:
        """(reconnects) A new connection in place of a broken one, outside any transaction."""
        if self.reconnects and self._depth == 0 and not self._closed and self.broken:
            raw = raw_connection(self.target)  # raises while the server is still away
            old, self.raw = self.raw, raw
            with contextlib.suppress(Exception):
                old.close()
            log.info("database: connected again to %s", self.target)

    @property
    def broken(self) -> bool:
        """The server went away (restart, network): this connection is useless, open another.
        Asked before a connection is used (outside a transaction): an idle connection
        whose socket has something to read -- the server closed it, or said why before
        doing so -- is tried with a round trip, so that the first statement after an
        outage is not the one to find out. Otherwise a look at the socket, no I/O."""
        if self.raw.broken or self.raw.closed:
            return True
        if self.in_transaction:
            return False
        try:
            poller = select.poll()  # not select(): a busy process has sockets numbered past 1024
            poller.register(self.raw.fileno(), select.POLLIN)
            if poller.poll(0):
                self.raw.execute("SELECT 1")
        except (OSError, ValueError, psycopg.Error):
            return True
        return False

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params=()):
        statement = to_postgres(sql)
        self._usable()
        if not self.in_transaction and _takes_lock(statement):
            with self.atomic():
                return self.raw.execute(statement, tuple(params))
        return self.raw.execute(statement, tuple(params))

    @contextlib.contextmanager
    def atomic(self):
        """One transaction; the outermost takes the writer lock, nested ones are savepoints."""
        self._usable()
        outer = not self.in_transaction
        self._depth += 1
        try:
            with self.raw.transaction():
                if outer:
                    self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
                yield self
        finally:
            self._depth -= 1

    def defer_wal_checkpoints(self) -> None:
        """SQLite's WAL copy-back has no counterpart here (PostgreSQL checkpoints alone)."""

    def checkpoint_wal(self) -> None:
        """See defer_wal_checkpoints."""

    def close(self) -> None:
        self._closed = True
        self.raw.close()


def connect(target: str) -> PgDatabase:
    """A connection (no migration)."""
    return PgDatabase(target, raw_connection(target))
