"""Running a node as a service: the systemd units of deploy/systemd (checked by
systemd-analyze), and TLS in front of the public site with the real nginx from
Debian's packages and deploy/nginx/ncii-node.conf, a certificate made here: a
follower reads the log over HTTPS through nginx (verifying against the test CA), the
client address reaches the failed-PIN limiter (X-Forwarded-For through a trusted
proxy, forged headers ignored) and the victim page loads through it in Chromium."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.datadir import DataDir

from nginx_support import Nginx, free_port, make_certificates, nginx_binary, site_config
from ops_support import HELPLINE, PLATFORM, YES, Node, fingerprint, ncii, wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
pytestmark = pytest.mark.timeout(240)


# ---------------------------------------------------------------------------------- systemd

def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is absent (Debian's systemd; scripts/install_service_tools installs it)")
    return path


def installed_units(tmp_path: Path) -> dict[str, Path]:
    """The unit files as scripts/install_service installs them, pointing at this
    environment's ncii-node (systemd-analyze checks that the command exists)."""
    command = Path(sys.executable).parent / "ncii-node"
    if not command.exists():
        pytest.skip(f"{command} is absent (install ncii-node into the environment: scripts/setup)")
    units = {}
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        text = unit.read_text()
        assert "/opt/ncii-node/venv/bin/ncii-node" in text or unit.suffix == ".timer", unit
        (tmp_path / unit.name).write_text(text.replace("/opt/ncii-node/venv/bin/ncii-node", str(command)))
        units[unit.name] = tmp_path / unit.name
    return units


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = systemd_analyze()
    units = installed_units(tmp_path)
    assert set(units) == {"ncii-node@.service", "ncii-node-backup@.service", "ncii-node-backup@.timer"}
    result = subprocess.run([analyze, "verify", "--man=no", *map(str, units.values())], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        result.stdout + result.stderr

    serve = units["ncii-node@.service"].read_text()
    for line in ("ProtectSystem=strict", "ReadWritePaths=/var/lib/ncii-node/%i", "Restart=on-failure",
                 "User=ncii-node", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n"):
        assert line in serve, line
    # systemd's own rating of the sandbox (0 = fully confined, 10 = exposed).
    instance = tmp_path / "ncii-node@helpline.service"
    instance.write_text(serve)
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(instance)], capture_output=True,
                            text=True, timeout=60)
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert exposure and float(exposure.group(1)) <= 2.0, result.stdout[-800:] + result.stderr
    print(f"\nsystemd-analyze security: exposure {exposure.group(1)} for ncii-node@.service")


def test_systemd_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a typo in a directive is reported."""
    analyze = systemd_analyze()
    units = installed_units(tmp_path)
    broken = tmp_path / "broken@.service"
    broken.write_text(units["ncii-node@.service"].read_text().replace("ProtectSystem=strict", "ProtectSystem=strcit"))
    result = subprocess.run([analyze, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=60)
    assert "strcit" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------- TLS

def https_json(url: str, body: dict | None, context: ssl.SSLContext, source: str = "127.0.0.1",
               headers: dict | None = None) -> tuple[int, dict]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=60, context=context,
                                       source_address=(source, 0))
    try:
        conn.request("POST" if body is not None else "GET", parts.path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode(errors="replace")}
    finally:
        conn.close()


def test_a_follower_and_a_browser_through_nginx_with_tls(tmp_path, monkeypatch, chromium_path, artifacts):
    nginx_binary()
    ca, cert, key, spki = make_certificates(tmp_path)
    helpline = Node(tmp_path / "helpline", HELPLINE, "helpline")
    platform = Node(tmp_path / "platform", PLATFORM, "platform")
    http_port, https_port = free_port(), free_port()
    datadir = DataDir(helpline.root)
    config = datadir.config
    config.http.trusted_proxies = ["127.0.0.1"]  # nginx, as README "TLS" says
    if hasattr(config.http, "public_names"):  # the names signed reads may be made for
        config.http.public_names.append(f"127.0.0.1:{https_port}")
    datadir.save_config(config)
    ncii("readers", "add", "--dir", str(helpline.root), ncii("key", "--dir", str(platform.root), "--request").stdout.strip())
    nginx = None
    try:
        helpline.start()
        node_port = int(helpline.url.rsplit(":", 1)[1])
        nginx = Nginx(tmp_path / "nginx", site_config(node_port, http_port, https_port, cert, key,
                                                       tmp_path / "nginx-ncii-error.log"))
        base = f"https://127.0.0.1:{https_port}"
        trusting = ssl.create_default_context(cafile=str(ca))
        wait_for("nginx to answer", lambda: _answers(base + "/checkpoint", trusting), 20)

        # A case opened through nginx, over HTTPS.
        status, case = https_json(base + "/v1/cases", {"eligibility": YES,
                                                      "fingerprints": [{"signal": "pdq", "fingerprint": fingerprint(i),
                                                                        "quality": 90} for i in range(3)]}, trusting)
        assert status == 201, case

        # The platform follows the helpline's log over HTTPS through nginx, trusting the test CA
        # (SSL_CERT_FILE: how an operator adds a private CA to what the node trusts).
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        platform.start()
        monkeypatch.delenv("SSL_CERT_FILE")
        ncii("follow", "add", "--dir", str(platform.root), base, "--vkey",
             ncii("key", "--dir", str(helpline.root)).stdout.strip(), "--interval", "0.2")
        last = max(p["index"] for p in case["published"])
        wait_for("the platform to verify the log through nginx", lambda: platform.followed(HELPLINE)["size"] > last, 60)
        followed = platform.followed(HELPLINE)
        assert followed["state"] == "ok" and followed["fingerprints"]["active"] == 3 and followed["url"] == base

        # Without the CA, the certificate is refused: verification is real.
        audit = ncii("audit", base, "--vkey", ncii("key", "--dir", str(helpline.root)).stdout.strip(), "--json",
                     "--html", str(tmp_path / "r.html"), check=False)
        assert audit.returncode == 2 and "certificate" in (audit.stdout + audit.stderr).lower(), audit.stdout + audit.stderr

        # Each person keeps a counter of their own behind the proxy, and a forged
        # X-Forwarded-For changes nothing (nginx replaces the header).
        from node.cases.limits import ADDRESS_POLICY
        from node.cases.numbers import new_case_number

        def guess(source: str, forged: str) -> int:
            return https_json(base + "/v1/cases/status", {"case_number": new_case_number(), "pin": "12345678"},
                              trusting, source=source, headers={"X-Forwarded-For": forged})[0]

        assert [guess("127.0.0.50", f"198.51.100.{i}") for i in range(ADDRESS_POLICY.free)] == [401] * ADDRESS_POLICY.free
        assert guess("127.0.0.50", "198.51.100.99") == 429
        assert guess("127.0.0.51", "198.51.100.1") == 401

        # Plain HTTP is redirected to HTTPS.
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 301 and response.getheader("Location") == "https://127.0.0.1/"
        conn.close()

        # The victim page loads through nginx in Chromium, pinned to the test certificate's key.
        _victim_page(chromium_path, base, spki, artifacts)
    finally:
        for node in (platform, helpline):
            if node.process is not None:
                node.stop()
        if nginx is not None:
            nginx.stop()
    logs = helpline.log_path.read_text()
    assert "127.0.0.50" not in logs and "198.51.100." not in logs and case["case_number"] not in logs


def _answers(url: str, context: ssl.SSLContext) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status == 200
    except OSError:
        time.sleep(0.1)
        return False


def _victim_page(chromium_path: str, base: str, spki: str, artifacts: Path) -> None:
    from webapp_support import CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path,
                                             args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki}"])
        try:
            context = browser.new_context(locale="fr-FR", service_workers="block")
            requests = []
            context.on("request", lambda request: requests.append(request.url))
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base + "/")
            page.wait_for_selector("body[data-ready=true]")
            assert page.evaluate("location.protocol") == "https:"
            assert page.evaluate("window.isSecureContext") is True
            page.screenshot(path=str(artifacts / "victim-page-through-nginx.png"), full_page=True)
            assert errors == [] and requests and all(url.startswith(base + "/") for url in requests), requests
        finally:
            browser.close()
