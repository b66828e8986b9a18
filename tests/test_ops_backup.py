"""Backup while the node serves, restore into a new directory, serve the copy, and
audit it against what a follower and an earlier audit saw before the backup
(real processes: `ncii-node serve`, `backup`, `restore`, `audit`)."""

from __future__ import annotations

import json
import stat
import threading
import urllib.request

import pytest

from ops_support import HELPLINE, Node, fingerprint, make_pair, ncii, open_case, token, wait_for

pytestmark = pytest.mark.timeout(240)


def append_until(node: Node, stop: threading.Event, appended: list[int]) -> None:
    """POST batches of submissions to the admin site until `stop` (the node keeps writing
    while the backup runs)."""
    i = 0
    while not stop.is_set():
        lines = "\n".join(json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": fingerprint(10_000 + i + k)})
                          for k in range(50)) + "\n"
        request = urllib.request.Request(node.admin_url + "/admin/append", data=lines.encode(), method="POST",
                                         headers={"Authorization": f"Bearer {token(node)}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        i += 50
        appended.append(i)


def test_backup_while_serving_then_restore_and_audit(tmp_path):
    helpline, platform = make_pair(tmp_path)
    auditor = tmp_path / "auditor"
    ncii("init", "--dir", str(auditor), "--origin", "auditor.ops.example/log", "--role", "witness")
    auditor_key = ncii("key", "--dir", str(auditor), "--request").stdout.strip()
    for node in (helpline, platform):
        ncii("readers", "add", "--dir", str(node.root), auditor_key, "--name", "auditor")
    vkey = ncii("key", "--dir", str(helpline.root)).stdout.strip()
    audit = ["audit", "--vkey", vkey, "--request-key", str(auditor / "keys" / "request.key"), "--json",
             "--state", str(tmp_path / "audit-state"), "--html", str(tmp_path / "report.html")]
    restored = None
    try:
        cases = [open_case(helpline, [fingerprint(i)], source=f"127.0.0.{40 + i}") for i in range(3)]
        seen = max(case["published"][0]["index"] for case in cases) + 1
        wait_for("the platform to verify the cases", lambda: platform.followed(HELPLINE)["size"] >= seen)
        before = platform.followed(HELPLINE)["size"]
        result = ncii(audit[0], helpline.url, *audit[1:], check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        platform.stop()  # the follower's view is now what it saw before the backup

        # Back up while the node is busy appending.
        stop, appended = threading.Event(), []
        writer = threading.Thread(target=append_until, args=(helpline, stop, appended))
        writer.start()
        try:
            wait_for("appends to start", lambda: appended)
            backup = json.loads(ncii("backup", str(helpline.root), str(tmp_path / "backup"), "--json").stdout)
        finally:
            stop.set()
            writer.join()
        assert backup["size"] >= before and backup["origin"] == HELPLINE
        assert appended[-1] > 0 and helpline.followed  # the node kept serving
        out = tmp_path / "backup"
        assert stat.S_IMODE(out.stat().st_mode) == 0o700
        for secret in ("keys/log.key", "admin.token", "keys/case.key", "node.db", "config.toml"):
            assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600, secret
        manifest = json.loads((out / "backup.json").read_text())
        assert manifest["size"] == backup["size"] and "keys/log.key" in manifest["files"]
        assert not any(name in manifest["files"] for name in ("lock", "serve.json"))
        helpline.stop()

        # A damaged backup, or a target that is not empty, is refused.
        damaged = tmp_path / "damaged"
        ncii("restore", str(out), str(tmp_path / "scratch"))
        import shutil

        shutil.copytree(out, damaged)
        (damaged / "tiles" / "checkpoint").write_bytes(b"not a checkpoint\n")
        result = ncii("restore", str(damaged), str(tmp_path / "never"), check=False)
        assert result.returncode == 1 and "damaged" in result.stderr and "changed: tiles/checkpoint" in result.stderr
        result = ncii("restore", str(out), str(tmp_path / "scratch"), check=False)
        assert result.returncode == 1 and "not an empty directory" in result.stderr

        # Restore into a new directory and serve it.
        result = ncii("restore", str(out), str(tmp_path / "restored"))
        assert f"at checkpoint {backup['size']}" in result.stdout and "FORK" in result.stderr
        restored = Node.__new__(Node)
        restored.root, restored.origin = tmp_path / "restored", HELPLINE
        restored.process, restored.log_path = None, tmp_path / "restored.log"
        restored.start()
        # Entries stored but not yet published when the copy was made are published now.
        wait_for("the restored node to publish what it stored",
                 lambda: json.loads(ncii("status", "--dir", str(restored.root), "--json", check=False).stdout)
                 ["node"]["log_size"] == backup["entries"])

        # The audit finds the restored log consistent with the earlier audit and with what
        # the follower saw before the backup.
        platform.start()
        result = ncii(audit[0], restored.url, *audit[1:], "--peer", platform.url, check=False)
        report = json.loads(result.stdout)
        assert result.returncode == 0, result.stdout
        assert report["consistency"]["status"] == "consistent"
        assert [peer["status"] for peer in report["peers"]] == ["consistent"]
        assert report["consistency"]["size"] == backup["entries"]

        # The restored node works: a case opened there is published after the backup's entries.
        case = open_case(restored, [fingerprint(99)], source="127.0.0.49")
        assert case["published"][0]["index"] == backup["entries"]
    finally:
        for node in (helpline, platform, restored):
            if node is not None:
                node.stop()
