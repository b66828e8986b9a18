"""Nobody but the node's own user reads its data directory: a helpline's database holds
PIN hashes and the link between cases and log entries."""

from __future__ import annotations

import stat

from node.cli import main as cli_main
from node.store import open_db


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_everything_private(tmp_path):
    root = tmp_path / "helpline"
    root.mkdir(mode=0o755)  # an empty directory made by someone else's umask
    assert cli_main(["init", "--dir", str(root), "--origin", "helpline.test/log"]) == 0
    assert mode(root) == 0o700
    for name in ("config.toml", "node.db", "admin.token", "keys/log.key", "keys/request.key"):
        assert mode(root / name) == 0o600, name
    # the write-ahead log files SQLite creates next to the database get its mode
    db = open_db(root / "node.db")
    db.execute("CREATE TABLE t (x)")
    assert mode(root / "node.db-wal") == 0o600
    db.close()
