"""deploy/nginx/ncii-node-multi.conf with Debian's real nginx in front of two real
`ncii-node serve` processes of one platform node on one PostgreSQL database (issue
17): the public site and the match API are spread over both, GET /healthz says each
can serve (one of them sequences), and once one process is killed (-9) every request
is still answered, by the other, with the same log."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from multi_support import ServeProcess, shared_datadir, submission
from multi_support import request as http_get
from nginx_support import Nginx, free_port, make_certificates, multi_site, nginx_binary
from ops_support import post_json, wait_for

REPO = Path(__file__).resolve().parents[1]
PLATFORM = "platform.multi.example/feedback"
pytestmark = pytest.mark.timeout(180)


def fetch(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        return fetch(url, context)[0] == 200
    except OSError:  # not listening yet
        return False


def healthy(node: ServeProcess) -> bool:
    status, report = fetch(node.public_url + "/healthz")
    return status == 200 and report["checks"].get("match_index") is True


def served(process: ServeProcess, path: str) -> int:
    """How many GET `path` this process answered (its access log, at DEBUG with -v)."""
    return process.log_path.read_text().count(f'"GET {path}" 200')


def test_two_processes_behind_nginx_one_killed(tmp_path, pg_url):
    nginx_binary()
    ca, cert, key, _ = make_certificates(tmp_path)
    trusting = ssl.create_default_context(cafile=str(ca))
    root = shared_datadir(tmp_path, pg_url, role="platform", origin=PLATFORM)
    first, second = ServeProcess(root, "a"), ServeProcess(root, "b")
    nginx = None
    try:
        first.start()
        second.start()
        wait_for("both processes to say they can serve", lambda: healthy(first) and healthy(second), 60)
        https_port, match_port = free_port(), free_port()
        ports = [int(n.public_url.rsplit(":", 1)[1]) for n in (first, second)]
        admin_ports = [int(n.admin_url.rsplit(":", 1)[1]) for n in (first, second)]
        nginx = Nginx(tmp_path / "nginx", multi_site(ports, admin_ports, https_port, match_port, cert, key,
                                                      tmp_path))
        base, match = f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{match_port}"
        wait_for("nginx to answer", lambda: answers(base + "/healthz", trusting), 20)

        # One sequences, both serve; both answer the public site, with the same log.
        assert sorted(fetch(p.public_url + "/healthz")[1]["sequencer"] for p in (first, second)) == [False, True]
        notes = {fetch(base + "/node.json", trusting)[1]["verifier_key"] for _ in range(8)}
        assert len(notes) == 1 and served(first, "/node.json") and served(second, "/node.json")
        # Both serve the very same note, our publication cosignature included.
        assert first.append(submission(1))["checkpoint_size"] == 1

        def same_note():
            notes = {http_get(p.public_url + "/checkpoint")[1] for p in (first, second)}
            return len(notes) == 1 and notes.pop().count("\n\u2014 ".encode()) == 2  # the log's, our cosignature
        wait_for("both processes to serve the same note", same_note, 10)
        token = (root / "match.token").read_text().strip()
        query = {"fingerprints": [{"signal": "pdq", "fingerprint": "ab" * 32}]}
        for _ in range(4):
            status, answer = post_json(match + "/v1/match", query, headers={"Authorization": f"Bearer {token}"})
            assert status == 200, answer
        assert post_json(match + "/admin/append", {})[0] == 404  # only the match API is reachable there

        # One process dies: every request is still answered.
        first.kill()
        answered_before = served(second, "/checkpoint")
        for _ in range(10):
            for path in ("/healthz", "/checkpoint", "/node.json"):
                request = urllib.request.Request(base + path)
                with urllib.request.urlopen(request, timeout=30, context=trusting) as response:
                    assert response.status == 200, path
            status, answer = post_json(match + "/v1/match", query, headers={"Authorization": f"Bearer {token}"})
            assert status == 200, answer
        assert served(second, "/checkpoint") == answered_before + 10  # all by the survivor
    finally:
        if nginx is not None:
            nginx.stop()
        first.stop()
        second.stop()
