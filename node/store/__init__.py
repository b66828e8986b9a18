"""The node's SQLite database, opened through sqlite-utils, and its schema migrations.

Every area keeps its tables in its own module of this package (`node/store/log.py`,
later `follow.py`, `cases.py`, ...). Such a module declares

    AREA = "log"                                   # unique name
    MIGRATIONS = [create_tables_v1, add_x_v2]      # functions taking a sqlite_utils.Database

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

logger = logging.getLogger(__name__)  # not "log": node.store.log is a submodule


def area_modules() -> list[ModuleType]:
    """Modules of this package that declare AREA and MIGRATIONS, sorted by name."""
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "AREA") and hasattr(module, "MIGRATIONS"):
            modules.append(module)
    return modules


class NodeDatabase(sqlite_utils.Database):
    """sqlite-utils' Database whose outermost `atomic()` is `BEGIN IMMEDIATE`.

    Most of our transactions read, then write (check a row, then update it). A
    deferred `BEGIN` takes the write lock only at the first write, and if another
    connection (the follower, the sequencer, a CLI command) wrote in between, SQLite
    fails at once with "database is locked" instead of waiting. Taking the write lock
    up front makes every such transaction wait its turn (up to the busy timeout).
    Nested blocks still use savepoints."""

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


def connect(path: Path | str, *, check_same_thread: bool = True) -> NodeDatabase:
    """Open the database file with the pragmas every connection needs (no migration).

    A new database file is created with mode 0600 before SQLite opens it: a helpline's
    holds PIN hashes and the link between cases and entries, and SQLite gives its -wal
    and -shm files the database file's mode."""
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


def migrate(db: sqlite_utils.Database, modules: list[ModuleType] | None = None) -> None:
    """Bring every area's tables to the newest version."""
    conn = db.conn
    conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (area TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    for module in modules if modules is not None else area_modules():
        area = module.AREA
        # BEGIN IMMEDIATE takes the write lock before reading the version, so two
        # processes opening the same database cannot both run one migration.
        for step in range(len(module.MIGRATIONS)):
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT version FROM schema_versions WHERE area = ?", (area,)).fetchone()
                current = row[0] if row else 0
                if current > len(module.MIGRATIONS):
                    raise RuntimeError(f"database area {area!r} is at version {current}, newer than this "
                                       f"program knows ({len(module.MIGRATIONS)}); upgrade ncii-node")
                if current > step:
                    conn.execute("COMMIT")
                    continue
                module.MIGRATIONS[step](db)
                conn.execute("INSERT INTO schema_versions (area, version) VALUES (?, ?) "
                             "ON CONFLICT(area) DO UPDATE SET version = excluded.version", (area, step + 1))
                conn.execute("COMMIT")
                logger.debug("database: area %s migrated to version %d", area, step + 1)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise


def open_db(path: Path | str, *, check_same_thread: bool = True) -> NodeDatabase:
    """Open (creating if needed) the node database and migrate every area."""
    db = connect(path, check_same_thread=check_same_thread)
    migrate(db)
    return db
