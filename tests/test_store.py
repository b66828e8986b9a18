"""The store's transactions take the write lock up front, so a read-then-write waits
for another writer instead of failing with "database is locked" (SQLite) or losing an
update (PostgreSQL: the writer lock of node/store/pg.py). Both backends."""

from __future__ import annotations

import threading
import time

from node.store import open_db


def test_atomic_waits_for_another_writer(db_target):
    first, second = open_db(db_target), open_db(db_target, check_same_thread=False)
    first.execute("CREATE TABLE counter (n INTEGER)")
    first.execute("INSERT INTO counter VALUES (0)")
    errors: list[BaseException] = []

    def read_then_write():
        try:
            with second.atomic():
                (n,) = second.execute("SELECT n FROM counter").fetchone()
                second.execute("UPDATE counter SET n = ?", (n + 1,))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with first.atomic():
        (n,) = first.execute("SELECT n FROM counter").fetchone()
        other = threading.Thread(target=read_then_write)
        other.start()
        time.sleep(0.2)  # the other transaction is now waiting for the lock
        first.execute("UPDATE counter SET n = ?", (n + 1,))
    other.join(10)
    assert not errors, errors
    # neither increment was lost: the second read happened after the first commit
    assert first.execute("SELECT n FROM counter").fetchone()[0] == 2


def test_nested_atomic_rolls_back_only_the_inner_block(db_target):
    db = open_db(db_target)
    db.execute("CREATE TABLE t (x INTEGER)")
    with db.atomic():
        db.execute("INSERT INTO t VALUES (1)")
        try:
            with db.atomic():
                db.execute("INSERT INTO t VALUES (2)")
                raise ValueError("inner")
        except ValueError:
            pass
    assert [r[0] for r in db.execute("SELECT x FROM t")] == [1]
