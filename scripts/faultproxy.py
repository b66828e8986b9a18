"""A fault proxy for tests on loopback: one TCP port per directed link between two
nodes, forwarding to the target node's port, with faults switched on and off while
connections run (scripts/soak.py drives it).

A `Link` listens on 127.0.0.1 (port chosen by the system) and forwards every
connection to `target_port` on 127.0.0.1, byte for byte: HTTP, keep-alive and signed
requests pass unchanged (the signature covers the Host the follower sent, the proxy's
address, which the node receives). While a fault is set on the link it acts on the
bytes of every connection, in both directions, chunk by chunk:

    delay     each chunk waits `seconds` before it is forwarded
    drop      the connection goes silent: nothing more is forwarded either way until
              the fault ends, then it is closed (a black hole, not a refusal)
    reset     with probability p per chunk, the connection is aborted (RST both ways)
    truncate  with probability p per chunk, a prefix of the chunk is forwarded, then
              the connection is closed cleanly (FIN: the answer just stops)
    corrupt   with probability p per chunk, one byte is changed (XOR a random value)

and `Link.partition(seconds)` cuts the link: open connections are aborted and new
ones are aborted as they arrive. A partition of a pair of nodes is a partition of
both its links.

Adding a kind of fault: a class with a `name` and `async apply(link, conn, data)`
returning the bytes to forward (or raising `Cut`), and an entry in `LINK_FAULTS`.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections import Counter

CHUNK = 64 * 1024


class Cut(Exception):
    """End the connection: `reset` aborts it (RST), else it is closed (FIN)."""

    def __init__(self, reset: bool):
        super().__init__("reset" if reset else "closed")
        self.reset = reset


class Delay:
    name = "delay"

    def __init__(self, rng: random.Random):
        self.seconds = rng.uniform(0.05, 1.5)

    async def apply(self, link, conn, data: bytes) -> bytes:
        await asyncio.sleep(self.seconds)
        return data


class Drop:
    name = "drop"

    def __init__(self, rng: random.Random):
        pass

    async def apply(self, link, conn, data: bytes) -> bytes:
        if not conn.silent:
            conn.silent = True
            link.counts["drop"] += 1
        return b""


class Reset:
    name = "reset"

    def __init__(self, rng: random.Random):
        self.rng, self.p = rng, rng.uniform(0.2, 1.0)

    async def apply(self, link, conn, data: bytes) -> bytes:
        if self.rng.random() < self.p:
            link.counts["reset"] += 1
            raise Cut(reset=True)
        return data


class Truncate:
    name = "truncate"

    def __init__(self, rng: random.Random):
        self.rng, self.p = rng, rng.uniform(0.2, 1.0)

    async def apply(self, link, conn, data: bytes) -> bytes:
        if self.rng.random() < self.p:
            link.counts["truncate"] += 1
            conn.last_words = data[:self.rng.randrange(len(data))]
            raise Cut(reset=False)
        return data


class Corrupt:
    name = "corrupt"

    def __init__(self, rng: random.Random):
        self.rng, self.p = rng, rng.uniform(0.1, 0.6)

    async def apply(self, link, conn, data: bytes) -> bytes:
        if self.rng.random() < self.p:
            link.counts["corrupt"] += 1
            changed = bytearray(data)
            changed[self.rng.randrange(len(changed))] ^= self.rng.randrange(1, 256)
            return bytes(changed)
        return data


LINK_FAULTS = {cls.name: cls for cls in (Delay, Drop, Reset, Truncate, Corrupt)}


class _Connection:
    __slots__ = ("client", "upstream", "silent", "last_words", "closed")

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter):
        self.client, self.upstream = client, upstream
        self.silent = False
        self.last_words = b""
        self.closed = False

    def close(self, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            _close(writer, reset)


def _close(writer: asyncio.StreamWriter, reset: bool) -> None:
    try:
        if reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: the close sends RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
    except (OSError, RuntimeError):
        pass


class Link:
    """One direction of traffic between two nodes: `source` reaches `target` here."""

    def __init__(self, source: str, target: str, target_port: int, rng: random.Random):
        self.source, self.target = source, target
        self.name = f"{source}->{target}"
        self.target_port = target_port
        self.rng = rng
        self.port = 0
        self.fault = None
        self.fault_until = 0.0
        self.partitioned_until = 0.0
        self.counts: Counter = Counter()
        self._connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "Link":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close(reset=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ faults
    def set_fault(self, fault, seconds: float) -> None:
        self.fault, self.fault_until = fault, time.monotonic() + seconds

    def partition(self, seconds: float) -> None:
        self.partitioned_until = max(self.partitioned_until, time.monotonic() + seconds)
        for conn in list(self._connections):
            conn.close(reset=True)

    def heal(self) -> None:
        """End every fault and partition now."""
        self.partitioned_until = 0.0
        self._end_fault()

    def _end_fault(self) -> None:
        self.fault, self.fault_until = None, 0.0
        for conn in list(self._connections):
            if conn.silent:
                conn.close(reset=False)

    def active_fault(self):
        """The fault in force (ending it, and closing its silent connections, once its
        time is up: call this now and then even without traffic)."""
        if self.fault is not None and time.monotonic() >= self.fault_until:
            self._end_fault()
        return self.fault

    def partitioned(self) -> bool:
        return time.monotonic() < self.partitioned_until

    # ------------------------------------------------------------------ forwarding
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            _close(writer, reset=True)  # stop(): asyncio's server callback would log the cancellation
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader, writer) -> None:
        self.counts["connections"] += 1
        if self.partitioned():
            self.counts["refused"] += 1
            _close(writer, reset=True)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), 5)
        except (OSError, asyncio.TimeoutError):
            self.counts["target down"] += 1
            _close(writer, reset=True)
            return
        conn = _Connection(writer, up_writer)
        self._connections.add(conn)
        try:
            await asyncio.gather(self._pump(conn, reader, up_writer), self._pump(conn, up_reader, writer))
        finally:
            self._connections.discard(conn)
            conn.close(reset=False)

    async def _pump(self, conn: _Connection, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while not conn.closed:
                data = await source.read(CHUNK)
                if not data:
                    if not conn.silent:
                        sink.write_eof()
                    return
                if self.partitioned():
                    raise Cut(reset=True)
                fault = self.active_fault()
                if fault is not None:
                    data = await fault.apply(self, conn, data)
                if conn.silent:
                    if self.active_fault() is None:  # the silence ends with the fault
                        raise Cut(reset=False)
                    continue
                if data:
                    sink.write(data)
                    await sink.drain()
        except Cut as cut:
            if conn.last_words and not cut.reset:
                try:
                    sink.write(conn.last_words)
                except (OSError, RuntimeError):
                    pass
            conn.close(cut.reset)
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            conn.close(reset=True)
