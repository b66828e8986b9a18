"""One thread and one database connection: how the node's asyncio code uses the database.

    worker = DatabaseWorker(db_path, name="cases-db")
    case = await worker.cases.get_case(case_id)   # a repository call (node/store), awaited
    rows = await worker.call(fn, *args)           # fn(db, *args): several calls in one go
    await worker.close()

SQLite connections and most of the work on them block, so every part of a running
node that uses the database (the sequencer, the case service, the follower, gossip,
the witness, the figures) does it through a worker of its own: one thread (a
single-thread executor) that alone uses its connection, one call at a time, in the
order the calls were made. The connection is opened (and the schema migrated) by the
first call, in that thread. Several workers may share one database: SQLite serializes
their writes (WAL; node.store.NodeDatabase takes the write lock up front).

`run(fn, *args)` runs a call that takes no connection on the same thread (work that
must stay in order with the database calls, e.g. the sequencer's tile files).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Callable

from node.store import REPOSITORIES, open_db


class DatabaseWorker:
    def __init__(self, db_path: Path | str, *, name: str = "db"):
        self.db_path = db_path
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._db = None

    def database(self):
        """The worker's connection (opened on first use); only from the worker's thread."""
        if self._db is not None and getattr(self._db, "broken", False):
            self._db = None  # PostgreSQL went away: the call that found out failed, the next reconnects
        if self._db is None:
            self._db = open_db(self.db_path, check_same_thread=False)
        return self._db

    async def call(self, fn: Callable, *args, **kwargs):
        """fn(db, *args, **kwargs) in the worker's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self.database(), *args, **kwargs))

    async def run(self, fn: Callable, *args):
        """fn(*args) in the worker's thread (no connection)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def submit(self, fn: Callable, *args) -> concurrent.futures.Future:
        """fn(*args) queued on the worker's thread, not awaited (work off the critical path)."""
        return self._executor.submit(fn, *args)

    def __getattr__(self, name: str):
        if name in REPOSITORIES:
            return _Repository(self, name)
        raise AttributeError(name)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)


class _Repository:
    """A repository of the worker's connection whose methods are awaited: each call
    runs in the worker's thread."""

    def __init__(self, worker: DatabaseWorker, name: str):
        self._worker = worker
        self._name = name

    def __getattr__(self, method: str):
        async def call(*args, **kwargs):
            return await self._worker.call(lambda db: getattr(getattr(db, self._name), method)(*args, **kwargs))

        call.__name__ = method
        return call
