"""The whole cycle with real processes: a helpline node and a platform node, each an
`ncii-node serve` process on 127.0.0.1, reading each other's logs as registered
readers. A case is opened over HTTP; the platform follows and holds the
fingerprints; it publishes `removed` with `ncii-node feedback`; the helpline
follows the platform and the case status shows the verdict; the person withdraws;
the platform applies the withdrawal (and, when `ncii-node match` exists, stops
matching). Everything both processes log, at DEBUG, is checked for the case number,
the PIN, the client address and the user agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELPLINE = "helpline.cycle.example/log"
PLATFORM = "platform.cycle.example/feedback"
YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}
CLIENT_ADDRESS = "127.0.0.66"
USER_AGENT = "CycleProbe/1.0 (ua-marker-8812)"

pytestmark = pytest.mark.timeout(180)


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def ncii(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "node", *args], cwd=REPO, env=env(), text=True,
                            capture_output=True, timeout=120)
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def has_command(name: str) -> bool:
    from node.cli import build_parser

    return name in build_parser()._subparsers._group_actions[0].choices


def post_json(url: str, body: dict) -> tuple[int, dict]:
    """POST from CLIENT_ADDRESS with USER_AGENT (both must stay out of the logs)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60,
                                      source_address=(CLIENT_ADDRESS, 0))
    try:
        conn.request("POST", parts.path, body=json.dumps(body),
                     headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def wait_for(what, probe, timeout=60.0, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


class Node:
    def __init__(self, root: Path, origin: str, role: str):
        self.root, self.origin = root, origin
        ncii("init", "--dir", str(root), "--origin", origin, "--role", role)
        config = (root / "config.toml").read_text()
        config = config.replace("pin_scrypt_n = 32768", "pin_scrypt_n = 1024")
        (root / "config.toml").write_text(config)
        self.process = None
        self.log_path = root.parent / f"{root.name}.log"

    def start(self) -> None:
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "node", "-v", "serve", "--dir", str(self.root),
                                         "--port", "0"], cwd=REPO, env=env(), stdout=self.log_file,
                                        stderr=subprocess.STDOUT)

        def ready():
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                info = json.loads((self.root / "serve.json").read_text())
            except (FileNotFoundError, ValueError):
                return None
            return info if info.get("pid") == self.process.pid else None

        info = wait_for("the node to start", ready, 30)
        self.url, self.admin_url = info["public_url"], info["admin_url"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()

    def status(self) -> dict:
        return json.loads(ncii("status", "--dir", str(self.root), "--json").stdout)

    def followed(self, origin: str) -> dict | None:
        return next((log for log in self.status()["logs"] if log["origin"] == origin), None)


@pytest.fixture
def nodes(tmp_path):
    helpline = Node(tmp_path / "helpline", HELPLINE, "helpline")
    platform = Node(tmp_path / "platform", PLATFORM, "platform")
    ncii("readers", "add", "--dir", str(helpline.root), ncii("key", "--dir", str(platform.root), "--request").stdout.strip())
    ncii("readers", "add", "--dir", str(platform.root), ncii("key", "--dir", str(helpline.root), "--request").stdout.strip())
    helpline.start()
    platform.start()
    try:
        ncii("follow", "add", "--dir", str(platform.root), helpline.url, "--vkey",
             ncii("key", "--dir", str(helpline.root)).stdout.strip(), "--interval", "0.2")
        ncii("follow", "add", "--dir", str(helpline.root), platform.url, "--vkey",
             ncii("key", "--dir", str(platform.root)).stdout.strip(), "--interval", "0.2")
        yield helpline, platform
    finally:
        helpline.stop()
        platform.stop()


def test_the_whole_cycle_with_real_processes(nodes):
    helpline, platform = nodes
    fingerprints = [{"signal": "pdq", "fingerprint": f"{0x9e3779b97f4a7c15 * (i + 1):064x}"[-64:], "quality": 95}
                    for i in range(3)]
    status, case = post_json(helpline.url + "/v1/cases", {"eligibility": YES, "fingerprints": fingerprints,
                                                          "lang": "fr"})
    assert status == 201, case
    number, pin = case["case_number"], case["pin"]
    indices = [p["index"] for p in case["published"]]
    codes = {"case_number": number, "pin": pin}

    # The platform verifies and stores the fingerprints.
    wait_for("the platform to verify the case's entries",
             lambda: (helpline_log := platform.followed(HELPLINE)) and helpline_log["size"] >= max(indices) + 1)
    assert platform.followed(HELPLINE)["fingerprints"] == {"active": 3, "withdrawn": 0, "suppressed": 0}

    if has_command("match"):
        out = ncii("match", "--dir", str(platform.root), "--pdq", fingerprints[0]["fingerprint"], "--json").stdout
        matches = json.loads(out.splitlines()[0])["matches"]
        assert any(m["origin"] == HELPLINE and m["index"] == indices[0] and m["distance"] == 0 for m in matches)

    # Feedback: refused for what the platform did not verify, published for a real entry.
    bad = ncii("feedback", "--dir", str(platform.root), "--origin", "nobody.example/log", "--index", "0",
               "--verdict", "removed", check=False)
    assert bad.returncode == 1 and "does not follow" in bad.stderr
    bad = ncii("feedback", "--dir", str(platform.root), "--origin", HELPLINE, "--index", "999",
               "--verdict", "removed", check=False)
    assert bad.returncode == 1 and "not a submission" in bad.stderr
    ncii("feedback", "--dir", str(platform.root), "--origin", HELPLINE, "--index", str(indices[1]),
         "--verdict", "matched-pending-review")
    published = json.loads(ncii("feedback", "--dir", str(platform.root), "--origin", HELPLINE, "--index",
                                str(indices[1]), "--verdict", "removed").stdout)
    assert published["entry"]["verdict"] == "removed" and published["entry"]["index"] == indices[1]

    # The helpline follows the platform: the case status shows the latest verdict.
    def feedback_shown():
        status, answer = post_json(helpline.url + "/v1/cases/status", codes)
        assert status == 200, answer
        return answer if any(f["verdict"] == "removed" for f in answer["feedback"]) else None

    day_before = time.strftime("%Y-%m-%d", time.gmtime())
    answer = wait_for("the verdict to reach the case status", feedback_shown)
    (item,) = answer["feedback"]
    # No name was given with `follow add --name`: none is shown (the page says "a partner platform").
    assert item == {"platform": PLATFORM, "name": None, "index": indices[1], "verdict": "removed",
                    "day": item["day"]}
    # The day the helpline verified the verdict (feedback entries carry no time of their own).
    assert item["day"] in (day_before, time.strftime("%Y-%m-%d", time.gmtime()))

    # The person withdraws; the platform applies the withdrawal.
    status, answer = post_json(helpline.url + "/v1/cases/withdraw", codes)
    assert status == 200 and answer["state"] == "withdrawn" and answer["withdrawn_at"]["published"]
    withdrawal_index = answer["withdrawn_at"]["entries"][0]
    wait_for("the platform to apply the withdrawal",
             lambda: platform.followed(HELPLINE)["size"] > withdrawal_index)
    assert platform.followed(HELPLINE)["fingerprints"] == {"active": 0, "withdrawn": 3, "suppressed": 0}

    if has_command("match"):
        out = ncii("match", "--dir", str(platform.root), "--pdq", fingerprints[0]["fingerprint"], "--json").stdout
        assert json.loads(out.splitlines()[0])["matches"] == []

    # Nothing either process logged holds the codes, the client's address or its user agent.
    helpline.stop()
    platform.stop()
    logs = helpline.log_path.read_text() + platform.log_path.read_text()
    assert "/v1/cases/status" in logs  # the access log was on
    for secret in (number, number.replace("-", ""), pin, CLIENT_ADDRESS, USER_AGENT, "ua-marker"):
        assert secret not in logs, secret
