"""PostgreSQL goes away and comes back (issue 17): a real `ncii-node serve` process on
a throwaway cluster of its own, whose server is stopped as a crash would
(`pg_ctl stop -m immediate`) and started again. Appends acknowledged before the
outage stay in the log at their indices; during it /healthz says 503 and an append
gets a clear 503 at once; after it the process takes the lease back, appends work and
new checkpoints are published; each outage is one WARNING line per connection kind,
not one per attempt; and SIGTERM during an outage stops the process within a bound."""

from __future__ import annotations

import json
import time

import pytest

from multi_support import ADMIN, ServeProcess, request, shared_datadir, submission
from node.store import open_db, pending
from pg_support import PgCluster
from test_cases_cycle import wait_for

pytestmark = pytest.mark.timeout(240)
#: Seconds a stop (SIGTERM) during an outage may take.
STOP_BOUND = 15.0


def _append(process: ServeProcess, line: dict, timeout: float = 30) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, body = request(process.admin_url + "/admin/append", json.dumps(line).encode(),
                           {**ADMIN, "Authorization": f"Bearer {process.admin_token}"}, timeout=timeout)
    return status, json.loads(body.splitlines()[0]), time.monotonic() - started


def _checkpoint_size(process: ServeProcess) -> int:
    status, body = request(process.public_url + "/checkpoint")
    assert status == 200, body
    return int(body.decode().split("\n")[1])


def test_postgresql_goes_away_and_comes_back(tmp_path):
    cluster = PgCluster()  # its own: it goes away (in /tmp/ncii-pg-*, which the postgres user can reach)
    process = None
    try:
        cluster.start()
        cluster.execute("CREATE DATABASE outage")
        url = cluster.url_of("outage")
        process = ServeProcess(shared_datadir(tmp_path, url), "a").start()
        before = []
        for i in range(3):
            status, ack, _ = _append(process, submission(i))
            assert status == 200, ack
            before.append(ack)
        assert process.health()["status"] == "ok"

        # The server goes away.
        cluster.halt()
        down = wait_for("/healthz to say 503", lambda: (h := process.health()) and h["status"] == "unavailable" and h,
                        timeout=15)
        assert down["checks"]["database"] is False and down["sequencer"] is False
        for i in range(2):  # the first may find the lease still held: both are refused at once, in plain words
            status, refusal, took = _append(process, submission(100 + i))
            assert status == 503, refusal
            assert "database" in refusal["error"] or "could not store" in refusal["error"], refusal
            assert took < 10, took
        time.sleep(2)  # several attempts to reconnect, each quiet

        # It comes back: the process takes the lease again and publishes.
        cluster.resume()
        up = wait_for("/healthz to say ok", lambda: (h := process.health()) and h["status"] == "ok" and h["sequencer"]
                      and h, timeout=30)
        assert up["epoch"] >= 2
        status, after, _ = _append(process, submission(200))
        assert status == 200, after
        assert after["index"] > before[-1]["index"] and after["checkpoint_size"] > after["index"]
        assert _checkpoint_size(process) >= after["checkpoint_size"]
        db = open_db(url)
        try:
            for ack in before + [after]:
                [(index, _data, leaf)] = list(db.log.iter_entries(ack["index"], ack["index"] + 1))
                assert index == ack["index"] and leaf.hex() == ack["leaf_hash"]
        finally:
            db.close()

        text = process.log_path.read_text()
        assert text.count("the lease session cannot reach PostgreSQL") == 1, text[-4000:]
        assert text.count("database notifications interrupted") <= 1, text[-4000:]
        assert "PostgreSQL answers the lease session again" in text

        # SIGTERM while the server is away: the process ends within a bound.
        cluster.halt()
        wait_for("/healthz to say 503", lambda: (h := process.health()) and h["status"] == "unavailable", timeout=15)
        started = time.monotonic()
        process.process.terminate()
        process.process.wait(STOP_BOUND + 10)
        took = time.monotonic() - started
        assert took < STOP_BOUND, (took, process.log_path.read_text()[-4000:])
        assert process.process.returncode == 0, process.log_path.read_text()[-4000:]
    finally:
        if process is not None:
            process.kill()
        cluster.stop()


def _terminate(url: str, application_name: str | None = None, pid: int | None = None) -> None:
    """Ends server sessions of `url`'s database, as a restart of the server would."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as admin:
        if pid is not None:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        else:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()")
    time.sleep(0.2)  # the server's close reaches the client's socket


def test_the_runtime_connection_reconnects_between_transactions_never_inside(pg_url):
    db = open_db(pg_url)
    try:
        db.reconnects = True
        first = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        _terminate(pg_url, pid=first)
        assert db.broken  # found out before use: the socket says the server closed it
        assert db.log.latest_checkpoint() is None  # the first statement after the outage works
        second = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert second != first
        # Inside a transaction a broken connection is never replaced: what follows must
        # not run outside the transaction the outage cut.
        with pytest.raises(Exception):
            with db.atomic():
                db.execute("SELECT 1")
                _terminate(pg_url, pid=second)
                pending.add(db, [b"x"])
        assert db.execute("SELECT count(*) FROM pending_entries").fetchone()[0] == 0  # reconnected, nothing written
    finally:
        db.close()
    plain = open_db(pg_url)  # any other connection: a worker opens a new one itself
    try:
        _terminate(pg_url)
        with pytest.raises(Exception):
            plain.execute("SELECT 1")
    finally:
        plain.close()
