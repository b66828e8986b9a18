"""Storage: everything the node keeps, behind one seam: SQLite files (the default) or one
PostgreSQL database (node/store/pg.py; spec/parts/storage.md).

    db = open_db(path)          # a connection (NodeDatabase), every area migrated;
                                #   open_db("postgresql://...") gives a PgDatabase
    db.log.latest_checkpoint()  # repositories: db.log, db.readers, db.follow, db.follow_leaves,
                                #   db.peer_feedback, db.cases, db.matching, db.witness,
                                #   db.stats, db.acks
    with db.atomic(): ...       # one transaction; the outermost takes the write lock
    worker = DatabaseWorker(path)                        # node/store/worker.py: one thread,
    await worker.follow.get_log(origin)                  #   one connection, same repositories
    tiles = TileStore(tiles_dir, tmp_dir)                # node/store/tiles.py: the tile files

The rest of the node talks to storage only through these: every SQL statement, and
every read or write of a tile file, is in this package. Each repository module opens
with its tables and its contract -- what each call makes atomic, and what order it
keeps -- which both engines keep (PostgreSQL runs the same statements through
node/store/dialect.py, and keeps the tiles in the database: node/store/dbtiles.py);
callers rely on nothing else. A repository method that writes is one
transaction unless it says it runs inside the caller's (the follower's round, the
sequencer's batch).

Every area keeps its tables in its own module of this package (`log.py`, `follow.py`,
`cases.py`, ...). Such a module declares

    AREA = "log"                                   # unique name
    MIGRATIONS = [create_tables_v1, add_x_v2]      # functions taking the connection
    BACKENDS = ("postgresql",)                     # optional: only these engines

and nothing else needs editing: `open_db` discovers the modules, and for each area
runs, in order and each in its own transaction, the migrations beyond the version
recorded in the `schema_versions` table. A migration is never edited once released;
a change is a new function appended to the list.

The database runs in WAL mode (readers never block the writer) with
`synchronous=FULL`, so a committed transaction survives power loss: the log's crash
argument (spec/parts/publishing.md) relies on entries being durable before any tile
derived from them is written.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pkgutil
import sqlite3
from pathlib import Path
from types import ModuleType

import sqlite_utils

from node.store.log import StoredCheckpoint
from node.store.repositories import REPOSITORIES, Repositories

logger = logging.getLogger(__name__)  # not "log": node.store.log is a submodule


def area_modules(dialect: str = "sqlite") -> list[ModuleType]:
    """Modules of this package that declare AREA and MIGRATIONS, sorted by name; a module
    may keep to some engines (BACKENDS, e.g. the tiles a SQLite node keeps as files)."""
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "pg":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "AREA") and hasattr(module, "MIGRATIONS") \
                and dialect in getattr(module, "BACKENDS", ("sqlite", "postgresql")):
            modules.append(module)
    return modules


def is_postgres(target) -> bool:
    """Whether `target` (a DataDir's `db_path`) names a PostgreSQL database."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class NodeDatabase(Repositories, sqlite_utils.Database):
    """A connection: sqlite-utils' Database with the node's repositories, whose
    outermost `atomic()` is `BEGIN IMMEDIATE`.

    Most of our transactions read, then write (check a row, then update it). A
    deferred `BEGIN` takes the write lock only at the first write, and if another
    connection (the follower, the sequencer, a CLI command) wrote in between, SQLite
    fails at once with "database is locked" instead of waiting. Taking the write lock
    up front makes every such transaction wait its turn (up to the busy timeout).
    Nested blocks still use savepoints."""

    dialect = "sqlite"
    IntegrityError = sqlite3.IntegrityError

    @contextlib.contextmanager
    def atomic(self):
        if self.conn.in_transaction:
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def defer_wal_checkpoints(self) -> None:
        """Copy the WAL back into the database file only when asked (`checkpoint_wal`),
        not inside a commit: the sequencer does it after a batch is acknowledged."""
        self.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint_wal(self) -> None:
        self.execute("PRAGMA wal_checkpoint(PASSIVE)")


def connect(path: Path | str, *, check_same_thread: bool = True) -> NodeDatabase:
    """Open the database file with the pragmas every connection needs (no migration);
    a PostgreSQL URL gives a node.store.pg.PgDatabase.

    A new database file is created with mode 0600 before SQLite opens it: a helpline's
    holds PIN hashes and the link between cases and entries, and SQLite gives its -wal
    and -shm files the database file's mode."""
    if is_postgres(path):
        from node.store import pg

        return pg.connect(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    conn = sqlite3.connect(str(path), check_same_thread=check_same_thread, timeout=30.0,
                           isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return NodeDatabase(conn)


def migrate(db, modules: list[ModuleType] | None = None) -> None:
    """Bring every area's tables to the newest version, each step in its own transaction.
    The outermost `atomic()` takes the write lock before the version is read (SQLite's
    BEGIN IMMEDIATE, PostgreSQL's writer lock: node/store/pg.py), so two processes
    opening the same database cannot both run one migration."""
    dialect = getattr(db, "dialect", "sqlite")
    db.execute("CREATE TABLE IF NOT EXISTS schema_versions (area TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    recorded = dict(db.execute("SELECT area, version FROM schema_versions").fetchall())
    for module in modules if modules is not None else area_modules(dialect):
        area = module.AREA
        if recorded.get(area) == len(module.MIGRATIONS):
            continue  # the usual case: every process but the first finds the schema current
        for step in range(len(module.MIGRATIONS)):
            with db.atomic():
                row = db.execute("SELECT version FROM schema_versions WHERE area = ?", (area,)).fetchone()
                current = row[0] if row else 0
                if current > len(module.MIGRATIONS):
                    raise RuntimeError(f"database area {area!r} is at version {current}, newer than this "
                                       f"program knows ({len(module.MIGRATIONS)}); upgrade ncii-node")
                if current > step:
                    continue
                module.MIGRATIONS[step](db)
                db.execute("INSERT INTO schema_versions (area, version) VALUES (?, ?) "
                           "ON CONFLICT(area) DO UPDATE SET version = excluded.version", (area, step + 1))
                logger.debug("database: area %s migrated to version %d", area, step + 1)


def open_db(path: Path | str, *, check_same_thread: bool = True) -> NodeDatabase:
    """Open (creating if needed) the node database and migrate every area."""
    db = connect(path, check_same_thread=check_same_thread)
    migrate(db)
    return db


class StoreError(RuntimeError):
    """The database could not be read or copied; the message says why."""


def copy_database(source: Path, target: Path) -> tuple[StoredCheckpoint | None, int]:
    """Copy the database at `source` into the existing empty file `target` in ONE step
    (SQLite's online backup API: one read transaction, so one consistent state while
    the node's writers go on), as one self-contained file. Returns the copy's latest
    checkpoint and how many entries it stores. Raises StoreError."""
    source_conn = sqlite3.connect(f"{Path(source).as_uri()}?mode=ro", uri=True, timeout=30.0)
    target_conn = sqlite3.connect(target, isolation_level=None)
    try:
        source_conn.backup(target_conn)
        target_conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        copy = NodeDatabase(target_conn)
        return copy.log.latest_checkpoint(), copy.log.entry_count()
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from None
    finally:
        target_conn.close()
        source_conn.close()
