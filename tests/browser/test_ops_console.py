"""The operator's figures, end to end with real processes: a helpline and a platform
(`ncii-node serve` each), 10 cases opened over HTTP, verdicts published by the
platform (4 cases removed), a withdrawal, matches and a suppression. The figures
are checked against what the test did -- in `ncii-node stats --json`, in /metrics
(parsed with prometheus_client's parser) and on both consoles driven in Debian's
Chromium (screenshots in test-artifacts/browser/)."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ops_support import (  # noqa: E402
    HELPLINE,
    PLATFORM,
    Node,
    fingerprint,
    get,
    make_pair,
    ncii,
    open_case,
    post_json,
    send_verdict,
    token,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

CASES = 10
REMOVED = 4  # cases 0..3 get `removed` on their first fingerprint


@dataclass
class Scenario:
    helpline: Node
    platform: Node
    cases: list[dict]
    secrets: list[str]  # what no metric label may ever hold


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    helpline, platform = make_pair(tmp_path_factory.mktemp("ops"))
    try:
        cases = [open_case(helpline, [fingerprint(2 * i), fingerprint(2 * i + 1)], source=f"127.0.0.{20 + i}")
                 for i in range(CASES)]
        entries = [[p["index"] for p in case["published"]] for case in cases]
        last = max(i for pair in entries for i in pair)
        wait_for("the platform to verify every case", lambda: platform.followed(HELPLINE)["size"] > last)
        # Verdicts: case 0 is first under review, then removed; cases 1..3 removed; cases 4..9
        # under review; case 5's second fingerprint is not violating. 12 feedback entries.
        send_verdict(platform, HELPLINE, entries[0][0], "matched-pending-review")
        for i in range(REMOVED):
            send_verdict(platform, HELPLINE, entries[i][0], "removed")
        for i in range(REMOVED, CASES):
            send_verdict(platform, HELPLINE, entries[i][0], "matched-pending-review")
        send_verdict(platform, HELPLINE, entries[5][1], "not-violating")
        # The person of case 9 withdraws it; the platform suppresses case 8's second fingerprint.
        status, answer = post_json(helpline.url + "/v1/cases/withdraw",
                                   {"case_number": cases[9]["case_number"], "pin": cases[9]["pin"]}, source="127.0.0.29")
        assert status == 200, answer
        withdrawal = answer["withdrawn_at"]["entries"][-1]
        status, answer = post_json(platform.admin_url + "/v1/match/suppress",
                                   {"origin": HELPLINE, "index": entries[8][1], "feedback": False},
                                   headers={"Authorization": f"Bearer {token(platform)}"})
        assert status == 200, answer
        wait_for("the platform to apply the withdrawal", lambda: platform.followed(HELPLINE)["size"] > withdrawal)
        wait_for("the helpline to verify the 12 verdicts", lambda: helpline.followed(PLATFORM)["size"] >= 12)
        # Two match requests: case 5's fingerprint matches once; case 9's was withdrawn.
        for fp, expected in ((fingerprint(10), 1), (fingerprint(18), 0)):
            status, answer = post_json(platform.admin_url + "/v1/match", {"signal": "pdq", "fingerprint": fp},
                                       headers={"Authorization": f"Bearer {token(platform, 'match')}"})
            assert status == 200 and answer["total"] == expected, answer
        secrets = [s for case in cases for s in (case["case_number"], case["case_number"].replace("-", ""), case["pin"])]
        secrets += [f"127.0.0.{20 + i}" for i in range(CASES)] + [fingerprint(i) for i in range(2 * CASES)]
        yield Scenario(helpline, platform, cases, secrets)
    finally:
        helpline.stop()
        platform.stop()


def stats(node: Node, *args: str) -> dict:
    return json.loads(ncii("stats", "--dir", str(node.root), "--json", *args).stdout)


def metrics(node: Node, name: str = "metrics") -> dict:
    """{(sample name, frozenset(labels)): value}, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body, headers = get(node.admin_url + "/metrics", token(node, name))
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


# ---------------------------------------------------------------------------------- figures

def test_stats_counts_what_the_test_did(scenario):
    h = stats(scenario.helpline)
    assert h["cases"]["opened"] == CASES and h["cases"]["withdrawn"] == 1
    assert h["cases"]["totals"] == {"opened": CASES, "withdrawn": 1}
    assert h["log"]["fingerprints_published"] == {"pdq": 2 * CASES}
    assert h["verdicts_received"][PLATFORM]["totals"] == {
        "matched-pending-review": 7, "removed": REMOVED, "not-violating": 1, "disputed-false-match": 0}
    t = h["takedown"][PLATFORM]
    assert (t["cases_removed"], t["cases_answered"], t["case_rate"]) == (REMOVED, CASES, 40.0)
    assert (t["fingerprints_removed"], t["fingerprints_matched"], t["fingerprint_rate"]) == (REMOVED, 11, 36.4)
    assert sum(t["first_verdict_wait"].values()) == 11  # one first verdict per fingerprint answered
    assert [f["state"] for f in h["followed"]] == ["ok"]

    p = stats(scenario.platform, "--since", "7d")
    assert p["log"]["verdicts_sent"] == {"matched-pending-review": 7, "removed": REMOVED, "not-violating": 1}
    assert p["matching"]["suppressions"] == {HELPLINE: {"total": 1, "window": 1}}
    text = ncii("stats", "--dir", str(scenario.helpline.root)).stdout
    assert "cases 40.0 % (4 removed of 10 with a verdict)" in text, text
    bad = ncii("stats", "--dir", str(scenario.helpline.root), "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "7d, 30d, all" in bad.stderr


def test_metrics_of_the_helpline(scenario):
    # A mistyped URL holding a case number: counted, but under "(no route)".
    number = scenario.cases[0]["case_number"]
    assert get(f"{scenario.helpline.url}/v1/cases/{number}")[0] == 404
    assert get(f"{scenario.helpline.admin_url}/{number}", token(scenario.helpline))[0] == 404
    m = metrics(scenario.helpline)
    assert value(m, "ncii_http_requests_total", site="public", route="(no route)", status="404") >= 1
    assert value(m, "ncii_cases_created_total") == CASES
    assert value(m, "ncii_cases_withdrawn_total") == 1
    assert value(m, "ncii_feedback_received_total", platform=PLATFORM, verdict="removed") == REMOVED
    assert value(m, "ncii_feedback_received_total", platform=PLATFORM, verdict="matched-pending-review") == 7
    assert value(m, "ncii_log_entries_total", kind="submission", detail="pdq") == 2 * CASES
    assert value(m, "ncii_log_size") >= 2 * CASES + 1
    assert value(m, "ncii_follow_forked", origin=PLATFORM) == 0
    assert value(m, "ncii_follow_lag_entries", origin=PLATFORM) == 0
    assert value(m, "ncii_follow_errors_total", origin=PLATFORM) == 0
    assert value(m, "ncii_http_requests_total", site="public", route="/v1/cases", status="201") == CASES
    assert value(m, "ncii_sequencer_batch_seconds_count") >= 1
    assert_no_personal_labels(m, scenario.secrets)


def test_metrics_of_the_platform(scenario):
    m = metrics(scenario.platform)
    assert value(m, "ncii_matches_total", origin=HELPLINE) == 1
    assert value(m, "ncii_match_seconds_count") == 2
    assert value(m, "ncii_index_fingerprints", signal="pdq") == 2 * CASES - 2 - 1  # withdrawn, suppressed
    assert value(m, "ncii_log_entries_total", kind="feedback", detail="removed") == REMOVED
    assert value(m, "ncii_follow_size", origin=HELPLINE) >= 2 * CASES + 1
    assert "ncii_cases_created_total" not in {name for name, _ in m}  # a platform has no cases
    assert_no_personal_labels(m, scenario.secrets)


def assert_no_personal_labels(samples: dict, secrets: list[str]) -> None:
    for name, labels in samples:
        for label, text in labels:
            assert not any(secret in text for secret in secrets), (name, label, text)
            assert not re.search(r"[0-9a-f]{16}", text), (name, label, text)  # no fingerprint, no hash
            assert not re.fullmatch(r"[0-9.:]+", text) or label in ("status", "le", "version"), (name, label, text)


def test_metrics_need_the_metrics_or_admin_token(scenario):
    url = scenario.platform.admin_url + "/metrics"
    assert get(url)[0] == 401
    assert get(url, token(scenario.platform, "match"))[0] == 401  # the match token matches, nothing else
    assert get(url, "not-a-token")[0] == 401
    assert get(url, token(scenario.platform, "admin"))[0] == 200
    assert get(scenario.platform.url + "/metrics")[0] == 404  # never on the public site


def test_console_answers_a_bearer_token_and_refuses_others(scenario):
    url = scenario.helpline.admin_url + "/console"
    status, body, headers = get(url + "?lang=fr", token(scenario.helpline))
    assert status == 200 and "40,0\u202f%" in body.decode()
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert get(url, token(scenario.helpline, "metrics"))[0] == 401
    assert get(scenario.helpline.url + "/console")[0] == 404


def test_console_sign_in_is_hard_to_abuse(scenario):
    import http.client
    import time
    from urllib.parse import urlsplit

    from node.web.console_routes import _session_value

    admin = urlsplit(scenario.helpline.admin_url)

    def request(method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection(admin.hostname, admin.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Set-Cookie")
        finally:
            conn.close()

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # A page whose name was made to resolve to 127.0.0.1 (DNS rebinding) is refused.
    assert request("GET", "/console", headers={"Host": "evil.example", **bearer(scenario.helpline)})[0] == 421
    # Forged or stale cookies: a guessed MAC, an expiry too far ahead, an expired session.
    expiry = int(time.time()) + 3600
    for cookie in (f"{expiry}.{'0' * 64}", _session_value(token(scenario.helpline), int(time.time()) + 30 * 86400),
                   _session_value(token(scenario.helpline), int(time.time()) - 1), "garbage", ""):
        assert request("GET", "/console", headers={"Cookie": f"ncii_console={cookie}"})[0] == 401, cookie
    valid = _session_value(token(scenario.helpline), expiry)
    assert request("GET", "/console", headers={"Cookie": f"ncii_console={valid}"})[0] == 200
    # Sign-in: a wrong token sets no cookie; oversized or undecodable forms are refused.
    status, _, cookie = request("POST", "/console/login", b"token=nope&lang=fr", form)
    assert status == 401 and cookie is None
    assert request("POST", "/console/login", b"token=" + b"a" * 5000, form)[0] == 413
    assert request("POST", "/console/login", b"token=\xff\xfe", form)[0] == 400
    status, _, cookie = request("POST", "/console/login", f"token={token(scenario.helpline)}".encode(), form)
    assert status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def bearer(node: Node) -> dict:
    return {"Authorization": f"Bearer {token(node)}"}


# ---------------------------------------------------------------------------------- Chromium

def sign_in(browser, node: Node, lang: str):
    context = browser.new_context(locale="fr-FR" if lang == "fr" else "en-GB", viewport={"width": 1200, "height": 900})
    requests = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(node.admin_url + "/console")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    assert page.locator(".error").is_visible()
    errors.clear()  # the sign-in page itself answered 401, as it must
    page.fill("#token", token(node))
    page.click("button[type=submit]")
    page.wait_for_selector("#own-log")
    return context, page, requests, errors


def test_helpline_console_in_chromium(scenario, browser, artifacts):
    context, page, requests, errors = sign_in(browser, scenario.helpline, "en")
    try:
        cookie = next(c for c in context.cookies() if c["name"] == "ncii_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
        row = page.locator(f'#takedown tr[data-platform="{PLATFORM}"]')
        assert row.locator(".case-rate").inner_text().startswith("40.0 %")
        assert row.locator(".fingerprint-rate").inner_text().startswith("36.4 %")
        assert "Example Platform" in row.inner_text()
        assert page.locator("#cases .card .n").first.inner_text() == "10"
        # The charts are drawn by the node: 10 cases opened today, 1 withdrawn.
        opened = page.locator('#chart-cases rect[data-key="opened"]')
        assert sum(int(opened.nth(i).get_attribute("data-value")) for i in range(opened.count())) == CASES
        removed = page.locator('#chart-verdicts-0 rect[data-key="removed"]')
        assert sum(int(removed.nth(i).get_attribute("data-value")) for i in range(removed.count())) == REMOVED
        assert page.locator("#followed td.state-ok").count() == 1
        page.screenshot(path=str(artifacts / "console-helpline-en.png"), full_page=True)

        page.click("text=7 days")
        assert "window=7d" in page.url and page.locator('nav.window a[aria-current="page"]').inner_text() == "7 days"
        page.click("text=Langue : français")
        page.wait_for_selector("html[lang=fr]")
        assert page.locator(f'#takedown tr[data-platform="{PLATFORM}"] .case-rate').inner_text().startswith("40,0\u202f%")
        assert page.locator("#takedown h2").inner_text() == "Taux de retrait"
        page.screenshot(path=str(artifacts / "console-helpline-fr.png"), full_page=True)

        # Nothing but the console itself was fetched; no script ran, none failed.
        assert all(url.startswith(scenario.helpline.admin_url + "/console") for url in requests), requests
        assert errors == []
        page.click("text=Se déconnecter")
        page.wait_for_selector("#token")
        assert not [c for c in context.cookies() if c["name"] == "ncii_console"]
    finally:
        context.close()


def test_platform_console_in_chromium(scenario, browser, artifacts):
    context, page, requests, errors = sign_in(browser, scenario.platform, "en")
    try:
        matches = page.locator('#chart-matches rect[data-key="%s"]' % HELPLINE)
        assert sum(int(matches.nth(i).get_attribute("data-value")) for i in range(matches.count())) == 1
        sent = page.locator('#chart-sent rect[data-key="removed"]')
        assert sum(int(sent.nth(i).get_attribute("data-value")) for i in range(sent.count())) == REMOVED
        assert "1 suppressed in all" in page.locator("#matching").inner_text()
        index = page.locator("#index").inner_text()
        assert "17" in index and "fingerprints indexed (PDQ)" in index
        latency = page.locator("#latency").inner_text()
        assert "p99" in latency and "2\nrequests" in latency
        page.screenshot(path=str(artifacts / "console-platform-en.png"), full_page=True)
        assert errors == []
    finally:
        context.close()


# ---------------------------------------------------------------------------------- status

def test_status_exit_codes_and_lines(scenario):
    helpline = scenario.helpline
    result = ncii("status", "--dir", str(helpline.root), check=False)
    assert result.returncode == 0, result.stdout
    assert "this node: helpline.ops.example/log (helpline)" in result.stdout and "serving" in result.stdout
    # A followed log whose node does not answer: failing, exit 4, and no "in sync" beside it.
    from protocol.note import Signer

    ncii("follow", "add", "--dir", str(helpline.root), "http://127.0.0.1:9", "--vkey",
         Signer.generate("gone.example/log").verifier_key(), "--interval", "0.2")
    wait_for("the follower to fail", lambda: ncii("status", "--dir", str(helpline.root), check=False).returncode == 4)
    text = ncii("status", "--dir", str(helpline.root), check=False).stdout
    assert "[failing]" in text and "last error" in text
    lines = text.split("[failing]")[1].splitlines()[1:]
    block = "\n".join(lines[:next((i for i, line in enumerate(lines) if not line.startswith("  ")), len(lines))])
    assert "url            http://127.0.0.1:9" in block and "in sync" not in block, block
    ncii("follow", "remove", "--dir", str(helpline.root), "gone.example/log")
    assert ncii("status", "--dir", str(helpline.root), check=False).returncode == 0
    helpline.stop()
    result = ncii("status", "--dir", str(helpline.root), "--json", check=False)
    assert result.returncode == 5 and json.loads(result.stdout)["node"]["serving"] is False
    help_text = ncii("status", "--help").stdout
    assert "3  a followed log FORKED" in help_text and "4  a followed log" in help_text
