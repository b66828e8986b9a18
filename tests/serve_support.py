"""Real `ncii-node serve` processes for tests (start, SIGKILL, stop, their URLs), and raw
HTTP from a chosen loopback address for requests a well-behaved client never sends."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time


# --------------------------------------------------------------------- raw HTTP

def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def connect(url: str, source: str | None = None):
    """A raw connection to a node, from the loopback address `source` if given."""
    return await asyncio.open_connection(*host_port(url), local_addr=(source, 0) if source else None)


def head(method: str, path: str, url: str, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.removeprefix('http://')}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader, timeout: float):
    """(status, headers, body) of one answer, or raise asyncio.TimeoutError."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
    return int(status_line.split()[1]), headers, body


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            if not data:
                return True
    except (ConnectionError, asyncio.IncompleteReadError):
        return True
    except TimeoutError:
        return False
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on `host` (for a node that must keep its port across restarts)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class NodeProcess:
    def __init__(self, datadir, wrapper: str | None = None, *, port: int = 0, host: str = "127.0.0.1",
                 verbose: bool = False):
        self.datadir = datadir
        self.wrapper = wrapper
        self.verbose = verbose  # `ncii-node -v`: DEBUG logs too
        self.port = port  # 0: any free port, chosen again at each start
        self.host = host
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.stderr_path = datadir.root / "stderr.log"

    async def start(self) -> None:
        self.datadir.remove_serve_info()  # a SIGKILLed node leaves its serve.json behind
        args = ["serve", "--dir", str(self.datadir.root), "--host", self.host, "--port", str(self.port)]
        if self.wrapper:
            cmd = [sys.executable, "-c", self.wrapper] + args
        else:
            cmd = [sys.executable, "-m", "node"] + (["-v"] if self.verbose else []) + args
        with open(self.stderr_path, "a") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = self.datadir.read_serve_info()
            if info and info.get("pid") == self.proc.pid:
                self.info = info
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}: {self.stderr_path.read_text()[-2000:]}")
            await asyncio.sleep(0.02)
        raise AssertionError("node did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    async def wait_dead(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.proc.poll()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    @property
    def public_url(self) -> str:
        return self.info["public_url"]

    @property
    def admin_url(self) -> str:
        return self.info["admin_url"]
