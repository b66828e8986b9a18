"""A real `ncii-node serve` process for tests: start, SIGKILL, stop, its URLs."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time


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
