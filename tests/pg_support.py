"""A throwaway PostgreSQL cluster for the tests (Debian's PostgreSQL 15).

    cluster = PgCluster(tmp_dir)     # initdb in tmp_dir/data (owned by `postgres` when
    cluster.start()                  #   we are root: PostgreSQL refuses to run as root)
    url = cluster.create_database()  # a fresh database copied from the migrated template
    cluster.drop_database(url)
    cluster.stop()
    cluster.halt(); cluster.resume()  # PostgreSQL goes away (-m immediate: a crash) and comes back
    proxy = CuttingProxy(cluster.port)  # the server's answers cut half-way, on demand:
    proxy.url(url); proxy.arm(after); proxy.close()   #   see the class

The server listens on a unix socket in the cluster's directory and on a free TCP port
of 127.0.0.1, with trust authentication (nothing but this machine's loopback reaches
it). `fsync=off`: the tests kill node processes, never the machine, and a test cluster
need not survive a power cut; every other setting is PostgreSQL's default. Databases
are created from `ncii_template`, migrated once per session, so a test starts from
the node's full schema in milliseconds (CREATE DATABASE ... TEMPLATE).

scripts/setup installs the server (apt postgresql-15) when it is missing. When the
cluster cannot start, `PgUnavailable` says why and the PostgreSQL tests fail (never skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

BIN = Path(os.environ.get("NCII_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "ncii_template"


class PgUnavailable(RuntimeError):
    """The test cluster could not be started; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, root: Path | None = None, *, fsync: bool = False):
        self.fsync = fsync   # benchmarks compare with SQLite's synchronous=FULL: fsync on
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="ncii-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._names = itertools.count(1)
        self._running = False

    def _as_postgres(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, timeout: float = 120) -> None:
        try:
            result = subprocess.run([*self._as_postgres(), *args], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PgUnavailable(f"{args[0]}: {exc}") from None
        if result.returncode != 0:
            raise PgUnavailable(f"{Path(args[0]).name} failed ({result.returncode}): "
                                f"{(result.stderr or result.stdout).strip()[-2000:]}")

    @property
    def url(self) -> str:
        """The cluster's `postgres` database over TCP (trust authentication)."""
        return self.url_of("postgres")

    def url_of(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> PgCluster:
        if not (BIN / "initdb").exists():
            raise PgUnavailable(f"no PostgreSQL 15 in {BIN}: run scripts/setup (it installs postgresql-15)")
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-locale",
                  "-E", "UTF8", "--no-sync")
        self.port = _free_port()
        durability = "" if self.fsync else "-c fsync=off -c full_page_writes=off "
        self._options = (f"-k {self.root} -p {self.port} -h 127.0.0.1 {durability}"
                         "-c max_connections=200 -c shared_buffers=32MB")
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server (again, after halt()) on the same port and data."""
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o",
                  self._options, "-w", "-t", "60", "start")
        self._running = True

    def halt(self) -> None:
        """Stop the server at once, as a crash would (`-m immediate`), keeping its data."""
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def prepare_template(self, migrate) -> None:
        """Create `ncii_template` and let `migrate(url)` bring it to the node's schema."""
        self.execute(f"CREATE DATABASE {TEMPLATE}")
        migrate(self.url_of(TEMPLATE))

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, template: str = TEMPLATE) -> str:
        name = f"t{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url_of(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        try:
            if self._running:
                self._running = False
                self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except PgUnavailable:
            pass  # halted already
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class CuttingProxy:
    """A TCP proxy to the cluster (its own thread and event loop, so that blocking code
    may use it too), byte for byte, until `arm(after)`: then the first connection on
    which the server sends more than `after` bytes is cut there, reset both ways -- a
    server gone in the middle of a large answer. One cut per `arm`."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.cuts = 0
        self._after: int | None = None
        self._armed = 0  # how many times armed: each connection counts bytes from the latest
        self._transports: set = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cutting-proxy", daemon=True)
        self._thread.start()
        self._server = self._in_loop(self._start())
        self.port = self._server.sockets[0].getsockname()[1]

    def _in_loop(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _start(self):
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    def url(self, url: str) -> str:
        """`url` (of the cluster) through the proxy."""
        return url.replace(f":{self.target_port}/", f":{self.port}/")

    def arm(self, after: int) -> None:
        self._armed += 1
        self._after = after

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)

        async def pipe(src, dst, watched: bool) -> None:
            armed, count = self._armed, 0
            try:
                while data := await src.read(65536):
                    if watched and self._after is not None:
                        if armed != self._armed:
                            armed, count = self._armed, 0
                        count += len(data)
                        if count > self._after:
                            dst.write(data[:len(data) - (count - self._after)])
                            await dst.drain()
                            self._after, self.cuts = None, self.cuts + 1
                            for transport in pair:
                                transport.abort()
                            return
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
        self._transports.difference_update(pair)

    def close(self) -> None:
        async def stop():
            self._server.close()
            for transport in list(self._transports):
                transport.abort()

        self._in_loop(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
