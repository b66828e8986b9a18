"""Helpers of the operations tests (console, metrics, backup, TLS): a helpline and a
platform as real `ncii-node serve` processes (test_cases_cycle.Node), cases opened
over HTTP from distinct loopback addresses, verdicts published over the admin site,
and reads of the admin site with a token."""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from test_cases_cycle import YES, Node, ncii, wait_for  # noqa: F401  (re-exported)

HELPLINE = "helpline.ops.example/log"
PLATFORM = "platform.ops.example/feedback"


def fingerprint(i: int) -> str:
    """A distinct PDQ fingerprint (64 hex digits) for each i, far (about 128 bits)
    from every other one."""
    return hashlib.sha256(f"ops fingerprint {i}".encode()).hexdigest()


def post_json(url: str, body: dict, *, source: str = "127.0.0.1", headers: dict | None = None) -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60, source_address=(source, 0))
    try:
        conn.request("POST", parts.path, body=json.dumps(body),
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def get(url: str, token: str | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def token(node: Node, name: str = "admin") -> str:
    return (node.root / f"{name}.token").read_text().strip()


def make_pair(tmp: Path, helpline_origin: str = HELPLINE, platform_origin: str = PLATFORM) -> tuple[Node, Node]:
    """A helpline and a platform, started, each reading and following the other."""
    helpline = Node(tmp / "helpline", helpline_origin, "helpline")
    platform = Node(tmp / "platform", platform_origin, "platform")
    ncii("readers", "add", "--dir", str(helpline.root), ncii("key", "--dir", str(platform.root), "--request").stdout.strip(),
         "--name", "platform")
    ncii("readers", "add", "--dir", str(platform.root), ncii("key", "--dir", str(helpline.root), "--request").stdout.strip(),
         "--name", "helpline")
    helpline.start()
    platform.start()
    ncii("follow", "add", "--dir", str(platform.root), helpline.url, "--vkey",
         ncii("key", "--dir", str(helpline.root)).stdout.strip(), "--interval", "0.2")
    ncii("follow", "add", "--dir", str(helpline.root), platform.url, "--vkey",
         ncii("key", "--dir", str(platform.root)).stdout.strip(), "--interval", "0.2", "--name", "Example Platform")
    return helpline, platform


def open_case(helpline: Node, fingerprints: list[str], source: str) -> dict:
    status, case = post_json(helpline.url + "/v1/cases", {
        "eligibility": YES, "lang": "en",
        "fingerprints": [{"signal": "pdq", "fingerprint": fp, "quality": 95} for fp in fingerprints]}, source=source)
    assert status == 201, case
    return case


def send_verdict(platform: Node, origin: str, index: int, verdict: str) -> dict:
    status, answer = post_json(platform.admin_url + "/v1/feedback", {"origin": origin, "index": index,
                                                                     "verdict": verdict},
                               headers={"Authorization": f"Bearer {token(platform)}"})
    assert status == 200, answer
    return answer
