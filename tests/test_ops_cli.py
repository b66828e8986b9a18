"""The command line of running a node: `--version`, ports kept by `init` (a restart
without flags serves on the same ports)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from node.cli import main as cli_main
from node.datadir import DataDir

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_version(capsys):
    try:
        cli_main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert out.startswith("ncii-node ") and out.split()[1][0].isdigit()


def test_init_keeps_the_ports_and_serve_uses_them(tmp_path):
    port, admin_port = free_port(), free_port()
    root = tmp_path / "node"
    assert cli_main(["init", "--dir", str(root), "--origin", "ports.example/log", "--port", str(port),
                     "--admin-port", str(admin_port)]) == 0
    config = DataDir(root).config
    assert (config.http.port, config.admin.port) == (port, admin_port)
    assert (root / "metrics.token").stat().st_mode & 0o777 == 0o600
    assert cli_main(["init", "--dir", str(tmp_path / "bad"), "--origin", "x.example/log", "--port", "70000"]) == 1
    for restart in range(2):  # a restart without flags comes back on the same ports
        process = subprocess.Popen([sys.executable, "-m", "node", "serve", "--dir", str(root)], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    info = json.loads((root / "serve.json").read_text())
                    if info.get("pid") == process.pid:
                        break
                except (FileNotFoundError, ValueError):
                    pass
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            assert info["public_url"] == f"http://127.0.0.1:{port}"
            assert info["admin_url"] == f"http://127.0.0.1:{admin_port}"
        finally:
            process.terminate()
            process.wait(30)
