"""Receipts and per-platform times in the page, in Debian's chromium, against a real
helpline and a real platform node that follow each other (both on one loop in this
process): the receipt given at creation, checked on the device by the page itself
and by `ncii-node audit verify-proof`; the status saying when the platform applied the
fingerprints, in French and in English; an up-to-date receipt carrying the platform's
acknowledgement; the withdrawal's receipt; a receipt altered by one character refused.
No receipt ever leaves the device: the page only GETs the receipt policy."""
from __future__ import annotations

import json
import re

import pytest
from webapp_support import ThreadedNode, check_requests, expect_view, wait_until

from node.cli import main as cli_main

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A helpline serving the page and a platform, each following the other."""
    from webapp_support import Recorder

    from node.datadir import DataDir
    from node.store import follow as follow_store
    from node.web.app import RunningNode
    from node.web.follow_routes import FOLLOW_SERVICE

    root = tmp_path_factory.mktemp("receipts")
    recorder = Recorder()
    with ThreadedNode(root / "helpline", recorder) as helpline:
        assert cli_main(["init", "--dir", str(root / "platform"), "--origin", "platform.test/log", "--role",
                         "platform", "--public-read"]) == 0
        platform_dir = DataDir(root / "platform")
        config = platform_dir.config
        config.log.sequencing_interval = 0.05
        platform_dir.save_config(config)
        platform = RunningNode(platform_dir)
        helpline.run(platform.start("127.0.0.1", 0))

        async def follow_each_other():
            for follower, followed, name in ((platform, helpline.node, "helpline"),
                                             (helpline.node, platform, "Plateforme Exemple")):
                follow_store.add_log(follower.context.db, followed.context.config.node.origin, followed.public_url,
                                     followed.context.log_vkey, name=name, interval=0.05)
                await follower.app[FOLLOW_SERVICE]["service"].reload()

        helpline.run(follow_each_other())
        helpline.recorder = recorder
        try:
            yield helpline
        finally:
            helpline.run(platform.stop())


def open_pair_page(browser, pair, locale):
    context = browser.new_context(locale=locale, accept_downloads=True, service_workers="block", viewport=PHONE)
    requests = []
    context.on("request", lambda request: requests.append(request))
    page = context.new_page()
    page.goto(pair.base_url + "/")
    page.wait_for_selector("body[data-ready=true]")
    return context, page, requests


def make_case_in_page(page, tmp_path):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(3)
    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).resize((512, 384)).save(photo)
    page.click("#start")
    expect_view(page, "eligibility")
    for question in ("in_image", "adult", "adult_in_image", "has_image", "intimate"):
        page.check(f"input[name={question}][value=yes]")
    page.click("#eligibility-continue")
    expect_view(page, "files")
    page.set_input_files("#file-input", str(photo))
    wait_until(page, "document.querySelectorAll('.file-item[data-status=done]').length === 1")
    page.click("#submit-fingerprints")
    expect_view(page, "codes")
    return page.inner_text("#case-number"), page.inner_text("#case-pin")


def download(page, selector, path):
    with page.expect_download() as info:
        page.click(selector)
    info.value.save_as(path)
    return info.value.suggested_filename, path.read_text("utf-8")


def check_in_page(page, path):
    page.evaluate("location.hash = '#receipt'")
    expect_view(page, "receipt")
    page.set_input_files("#receipt-input", str(path))
    page.wait_for_selector("#receipt-result:not([hidden]), #receipt-error:not([hidden])")
    return page.inner_text("#view-receipt")


def verify_offline(pair, receipt_path, tmp_path, capsys):
    import urllib.request

    with urllib.request.urlopen(pair.base_url + "/v1/cases/receipt-policy", timeout=10) as answer:
        (tmp_path / "policy.txt").write_bytes(answer.read())
    capsys.readouterr()
    code = cli_main(["audit", "verify-proof", str(receipt_path), "--policy", str(tmp_path / "policy.txt"), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_receipts_and_platform_times_in_the_page(browser, pair, tmp_path, capsys):
    context, page, requests = open_pair_page(browser, pair, "fr-FR")
    try:
        case_number, pin = make_case_in_page(page, tmp_path)

        # The receipt of the creation: offered with the codes, without them inside.
        assert page.is_visible("#codes-receipt") and "Votre reçu" in page.inner_text("#codes-receipt")
        name, receipt = download(page, "#download-receipt", tmp_path / "creation.tlog-proof")
        assert re.fullmatch(r"receipt-\d{4}-\d\d-\d\d\.tlog-proof", name)
        assert case_number not in receipt and pin not in receipt and case_number.replace("-", "") not in receipt
        code, checked = verify_offline(pair, tmp_path / "creation.tlog-proof", tmp_path, capsys)
        assert code == 0 and checked["valid"] and checked["published"]

        page.check("#codes-saved")
        page.click("#codes-done")
        expect_view(page, "welcome")

        # The page checks it on the device, and says what it proves in plain French.
        shown = check_in_page(page, tmp_path / "creation.tlog-proof")
        assert "Ce reçu est authentique" in shown
        assert "1 empreinte a été enregistrée dans le registre de ce service d'aide (helpline.test/log)" in shown
        assert "Le service d'aide déclare l'avoir enregistré le" in shown
        assert "Ce qu'il ne prouve pas" in shown

        # Altered by one character: refused.
        lines = receipt.split("\n")
        at = next(i for i, line in enumerate(lines) if line.startswith("extra "))
        lines[at] = lines[at][:-3] + ("A" if lines[at][-3] != "A" else "B") + lines[at][-2:]
        (tmp_path / "altered.tlog-proof").write_text("\n".join(lines))
        shown = check_in_page(page, tmp_path / "altered.tlog-proof")
        assert "n'est pas un reçu authentique" in shown and page.is_hidden("#receipt-result")

        # The status says when the platform applied the fingerprints.
        page.evaluate("location.hash = '#status'")
        expect_view(page, "status")
        page.fill("#status-case", case_number)
        page.fill("#status-pin", pin)

        def applied_shown() -> bool:
            page.click("#status-form button[type=submit]")
            page.wait_for_selector("#status-result:not([hidden])")
            return "appliquées le" in page.inner_text("#status-platforms")

        for _ in range(40):
            if applied_shown():
                break
            page.wait_for_timeout(250)
        platforms = page.inner_text("#status-platforms")
        assert "Plateforme Exemple" in platforms and "Vos empreintes\u00a0: appliquées le" in platforms, platforms

        # An up-to-date receipt now carries the platform's acknowledgement.
        _, latest = download(page, "#status-receipt", tmp_path / "latest.tlog-proof")
        code, checked = verify_offline(pair, tmp_path / "latest.tlog-proof", tmp_path, capsys)
        assert code == 0 and list(checked["applied"]) == ["Plateforme-Exemple"]
        shown = check_in_page(page, tmp_path / "latest.tlog-proof")
        assert "Plateforme-Exemple déclare avoir appliqué ces empreintes au plus tard le" in shown

        # Withdraw from the page: its receipt holds the withdrawal.
        page.evaluate("location.hash = '#withdraw'")
        expect_view(page, "withdraw")
        page.fill("#withdraw-case", case_number)
        page.fill("#withdraw-pin", pin)
        page.click("#withdraw-ask")
        page.click("#withdraw-yes")
        page.wait_for_selector("#withdraw-result:not([hidden])")
        assert page.is_visible("#download-withdrawal-receipt")
        _, withdrawal = download(page, "#download-withdrawal-receipt", tmp_path / "withdrawal.tlog-proof")
        shown = check_in_page(page, tmp_path / "withdrawal.tlog-proof")
        assert "L'annulation de 1 empreinte a aussi été enregistrée" in shown

        # What left the device: the contract's bodies, and the receipt policy fetched; no receipt.
        posts = check_requests(requests, pair.base_url)
        assert {path for path, _ in posts} >= {"/v1/cases", "/v1/cases/status", "/v1/cases/receipt",
                                                "/v1/cases/withdraw"}
        for request in requests:
            body = request.post_data_buffer or b""
            assert b"tlog-proof" not in body and b"extra " not in body
    finally:
        context.close()


def test_platform_times_in_english(browser, pair, tmp_path):
    from webapp_support import post_json

    status, case = post_json(pair.base_url, "/v1/cases", {
        "eligibility": dict.fromkeys(("in_image", "adult", "adult_in_image", "has_image", "intimate"), True),
        "fingerprints": [{"signal": "pdq", "fingerprint": "5a" * 8 + "c3" * 8 + "96" * 8 + "0f" * 8, "quality": 90}],
        "lang": "en"})
    assert status == 201, case
    context, page, _ = open_pair_page(browser, pair, "en-GB")
    try:
        page.evaluate("location.hash = '#status'")
        expect_view(page, "status")
        page.fill("#status-case", case["case_number"])
        page.fill("#status-pin", case["pin"])
        for _ in range(40):
            page.click("#status-form button[type=submit]")
            page.wait_for_selector("#status-result:not([hidden])")
            if "applied on" in page.inner_text("#status-platforms"):
                break
            page.wait_for_timeout(250)
        text = page.inner_text("#status-platforms")
        assert "What each platform has done" in page.inner_text("#status-result")
        assert "Plateforme Exemple" in text and "Your fingerprints: applied on" in text, text
    finally:
        context.close()
