"""Several real `ncii-node serve` processes of one node on one PostgreSQL database
(issue 17): the failover test, the nginx test and scripts/bench_pg_multi.py use them.

    root = shared_datadir(folder, pg_url, role="helpline")   # `init`, then [database] url
    process = ServeProcess(root, "a").start()                 # serve --port 0; waits until up
    process.public_url, process.admin_url, process.health()   # GET /healthz (None if down)
    process.append(entry_json) -> {"index", "leaf_hash", "checkpoint_size"} | None
    process.kill()                                            # SIGKILL
    process.stop()                                            # SIGTERM, then wait

Every process of a node uses the same data directory here (its keys, tokens, config);
each listens on its own free ports (DIR/serve.json is the last one started's).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
ADMIN = {"Content-Type": "application/x-ndjson"}


def run_ncii(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "node", *args], cwd=REPO, env=env, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def shared_datadir(folder: Path, pg_url: str, *, role: str = "helpline", origin: str = "multi.example/log",
                   interval: float = 0.01, public_read: bool = True) -> Path:
    """A data directory whose database is `pg_url`: public reads (unless `public_read` is
    False: then only registered readers' signed reads), no push channel, cheap PIN hashes,
    no case limits per address that the tests' few loopback addresses would hit."""
    root = folder / "node"
    run_ncii("init", "--dir", str(root), "--origin", origin, "--role", role, *(["--public-read"] * public_read))
    config = (root / "config.toml").read_text()
    for old, new in (('[database]\nurl = ""', f'[database]\nurl = "{pg_url}"'),
                     ("[push]\nenabled = true", "[push]\nenabled = false"),
                     ("sequencing_interval = 0.025", f"sequencing_interval = {interval}"),
                     ("pin_scrypt_n = 32768", "pin_scrypt_n = 1024")):
        assert old in config, old
        config = config.replace(old, new)
    for key in ("per_address_per_hour", "per_address_per_day", "per_network_per_hour", "per_network_per_day",
                "per_hour", "per_day", "proof_of_work_above_per_hour"):
        config, found = re.subn(rf"^{key} = \d+$", f"{key} = 1000000", config, flags=re.MULTILINE)
        assert found == 1, key
    (root / "config.toml").write_text(config)
    return root


class ServeProcess:
    def __init__(self, root: Path, name: str):
        self.root, self.name = root, name
        self.process: subprocess.Popen | None = None
        self.public_url = self.admin_url = ""
        self.log_path = root.parent / f"serve-{name}.log"
        self.admin_token = (root / "admin.token").read_text().strip()

    def start(self, timeout: float = 30.0) -> ServeProcess:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "node", "-v", "serve", "--dir", str(self.root),
                                             "--port", "0"], cwd=REPO, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                info = json.loads((self.root / "serve.json").read_text())
            except (FileNotFoundError, ValueError):
                info = {}
            if info.get("pid") == self.process.pid:
                self.public_url, self.admin_url = info["public_url"], info["admin_url"]
                return self
            assert time.monotonic() < deadline, f"serve {self.name} did not start"
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def health(self) -> dict | None:
        try:
            status, body = request(self.public_url + "/healthz", timeout=2)
        except OSError:
            return None
        return json.loads(body) if status in (200, 503) else None

    def append(self, line: dict, timeout: float = 90) -> dict | None:
        """POST /admin/append of one entry: its acknowledgement, or None if refused or cut."""
        try:
            status, body = request(self.admin_url + "/admin/append", json.dumps(line).encode(),
                                   {**ADMIN, "Authorization": f"Bearer {self.admin_token}"}, timeout=timeout)
        except OSError:
            return None
        return json.loads(body.splitlines()[0]) if status == 200 else None

    def kill(self) -> None:
        if self.alive:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def request(url: str, body: bytes | None = None, headers: dict | None = None, *, timeout: float = 30,
            source: str = "127.0.0.1") -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("POST" if body is not None else "GET", parts.path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def submission(i: int) -> dict:
    """A distinct submission entry (JSON view) for each i."""
    return {"kind": "submission", "signal": "pdq", "fingerprint": f"{(i + 1) * 0x9E3779B97F4A7C15:064x}"[-64:]}
