"""Every step of the page in every language (fr, en, es, de, it, pt, ar), in Debian's
chromium at phone size: a screenshot of each in test-artifacts/browser/languages/,
and axe-core on each -- Deque's accessibility checker, from the npm registry
(scripts/install_axe), served to the page under test only -- with no serious or
critical violation. Arabic is laid out right to left.

The helpline is configured as an operator would: its name and contact, a platform it
names (which it also follows, under that name, as a feedback log that announces a
flattering name of its own: never shown), and a configured platform that reads
nothing (never shown). One case has real platform feedback, from a genuine signed log
the node follows, so that the status step shows verdicts with their counts and days.

One browser and one node for the module; each language walks the steps once:
welcome, questions (unanswered), not eligible (image taken before 18), files, codes,
status, withdrawal (confirmation, done), other help, questions and answers.
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from webapp_support import (
    ARTIFACTS,
    REPO,
    STATIC,
    Recorder,
    ThreadedNode,
    check_requests,
    expect_view,
    post_json,
    read_log,
    shoot,
    wait_until,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: follow_support's real log server
from follow_support import LogServer, StaticLog  # noqa: E402

AXE = REPO / ".test-tools" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ARTIFACTS / "languages"
PHONE = {"width": 390, "height": 844}
QUESTIONS = ("in_image", "adult", "adult_in_image", "has_image", "intimate")
HELPLINE_ORIGIN = "helpline.test/log"
PLATFORM_ORIGIN = "social.example/feedback"
#: language, the browser's locale, the country the page then offers first
LANGUAGES = [("fr", "fr-BE", "BE"), ("en", "en-GB", "GB"), ("es", "es-US", "US"), ("de", "de-CH", "CH"),
             ("it", "it-CH", "CH"), ("pt", "pt-PT", "FR"), ("ar", "ar-MA", "FR")]
#: where each country's child protection appears first after Take It Down
CHILD_LINE = {"BE": "Child Focus", "GB": "Report Remove (Childline and IWF)", "US": "NCMEC CyberTipline",
              "CH": "147 – Pro Juventute", "FR": "3018 (e-Enfance)"}

RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ['violations'] });
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
}"""

minor_findings: dict[str, set] = {}
timings: dict[str, float] = {}


@pytest.fixture(scope="module")
def axe_source() -> bytes:
    if not AXE.exists():
        try:  # a fresh checkout that skipped scripts/setup
            subprocess.run(["bash", str(REPO / "scripts" / "install_axe")], capture_output=True, timeout=240)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if not AXE.exists():
        pytest.skip("axe-core is absent and scripts/install_axe could not install it (needs npm)")
    return AXE.read_bytes()


@pytest.fixture(scope="module")
def helpline(tmp_path_factory, axe_source):
    recorder = Recorder()
    recorder.extra_routes["test-tools/axe.min.js"] = (axe_source, "text/javascript")
    page = {"platforms": [{"name": "Example Social", "url": "https://social.example/safety"},
                          {"name": "Reads Nothing"}]}
    node = {"display_name": "Écoute Images", "contact": "https://helpline.example/contact"}
    with ThreadedNode(tmp_path_factory.mktemp("helpline-languages"), recorder, page=page, node=node) as running:
        yield running


def picture(seed: int) -> bytes:
    """A PNG with detail at two scales (a photo-like PDQ, quality well above 50)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((320, 320), Image.BICUBIC)
    fine = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).resize((320, 320), Image.BICUBIC)
    mixed = Image.blend(coarse, fine, 0.3)
    out = io.BytesIO()
    mixed.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def feedback_case(helpline):
    """A case three of whose fingerprints a platform answered in its own signed log:
    two `removed`, one `matched-pending-review`. The helpline follows that log under the
    name its operator gave ("Example Social"); the log announces "Totally Official
    Platform" about itself."""
    from node.store import follow as follow_store
    from node.store import open_db
    from node.web.follow_routes import FOLLOW_SERVICE
    from protocol.entries import Announcement, Feedback, encode_entry
    from protocol.merkle import leaf_hash

    fingerprints = [{"signal": "pdq", "fingerprint": hashlib.sha256(b"feedback %d" % i).hexdigest(), "quality": 90}
                    for i in range(3)]
    status, case = post_json(helpline.base_url, "/v1/cases", {"eligibility": dict.fromkeys(QUESTIONS, True),
                                                              "fingerprints": fingerprints, "lang": "en"})
    assert status == 201, case
    entries = read_log(helpline)
    indices = [item["index"] for item in case["published"]]
    platform = StaticLog(PLATFORM_ORIGIN)
    platform.append(encode_entry(Announcement("Totally Official Platform", "https://official.example/",
                                              "https://official.example/policy")))
    platform.append(*(encode_entry(Feedback(HELPLINE_ORIGIN, index, leaf_hash(entries[index]), verdict))
                      for index, verdict in zip(indices, ("removed", "removed", "matched-pending-review"))))
    server = helpline.run(LogServer(platform).start())
    db = open_db(helpline.datadir.db_path)
    try:
        follow_store.add_log(db, PLATFORM_ORIGIN, server.url, platform.vkey, name="Example Social")
    finally:
        db.close()
    helpline.run(helpline.node.app[FOLLOW_SERVICE]["service"].reload())
    codes = {"case_number": case["case_number"], "pin": case["pin"]}
    deadline = time.monotonic() + 30
    while True:
        status, answer = post_json(helpline.base_url, "/v1/cases/status", codes)
        if status == 200 and len(answer["feedback"]) == 3:
            break
        assert time.monotonic() < deadline, f"the platform's verdicts never reached the case: {answer}"
        time.sleep(0.2)
    yield codes
    helpline.run(server.stop())


def strings_of(lang: str) -> dict:
    return json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))


class Walk:
    """One language's walk through the page: a screenshot and an axe-core run per step."""

    def __init__(self, page, lang: str):
        self.page, self.lang, self.number = page, lang, 0
        self.axe_seconds = 0.0

    def step(self, name: str):
        self.number += 1
        shoot(self.page, SHOTS, f"{self.lang}-{self.number:02d}-{name}")
        if not self.page.evaluate("typeof axe !== 'undefined'"):
            self.page.add_script_tag(url="/test-tools/axe.min.js")
        started = time.perf_counter()
        violations = self.page.evaluate(RUN_AXE)
        self.axe_seconds += time.perf_counter() - started
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not serious, f"{self.lang}, step {name}: {json.dumps(serious, ensure_ascii=False, indent=1)}"
        for violation in violations:
            minor_findings.setdefault(f"{violation['id']} ({violation['impact']})", set()).add(f"{self.lang}/{name}")


@pytest.mark.parametrize("lang, locale, country", LANGUAGES, ids=[lang for lang, _, _ in LANGUAGES])
def test_every_step_in_every_language(browser, helpline, feedback_case, lang, locale, country, tmp_path):
    started = time.perf_counter()
    S = strings_of(lang)
    context = browser.new_context(locale=locale, viewport=PHONE, service_workers="block", accept_downloads=True)
    try:
        requests = []
        context.on("request", lambda request: requests.append(request))
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(error))
        console_errors = []
        page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
        page.goto(helpline.base_url + "/")
        page.wait_for_selector("body[data-ready=true]")
        history_length = page.evaluate("history.length")
        walk = Walk(page, lang)

        # Welcome: the language from the browser, the helpline's own name, contact and platforms.
        assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == [
            lang, "rtl" if lang == "ar" else "ltr"]
        assert page.inner_text("#welcome-title") == S["welcome.title"]
        assert page.inner_text("#site-name") == "Écoute Images"
        assert page.get_attribute("#helpline-contact-link", "href") == "https://helpline.example/contact"
        assert page.eval_on_selector_all("#platform-list li", "items => items.map(i => i.textContent)") == [
            "Example Social"]  # "Reads Nothing" reads nothing: not shown
        assert page.title() == f"{S['title.welcome']} – {S['app.title']}"
        if lang == "ar":
            check_right_to_left(page)
        # The language menu: every language named in itself, all of it on the screen.
        page.click("#language-menu summary")
        menu = page.evaluate("""() => { const r = document.querySelector('#language-list').getBoundingClientRect();
            return [r.left, r.right, window.innerWidth]; }""")
        assert 0 <= menu[0] and menu[1] <= menu[2], menu
        assert page.eval_on_selector_all("#language-list button", "bs => bs.map(b => b.lang)") == [
            code for code, _, _ in LANGUAGES]
        page.click("#language-menu summary")
        walk.step("welcome")

        # Questions, unanswered: each is marked.
        page.click("#start")
        expect_view(page, "eligibility")
        page.click("#eligibility-continue")
        assert page.locator(".question.unanswered").count() == 5
        assert page.inner_text("#q-adult_in_image legend") == S["eligibility.adult_in_image.question"]
        walk.step("questions")

        # 18 or over today, not in the image: Take It Down, then the country's child protection.
        for question in QUESTIONS:
            page.check(f"input[name={question}][value={'no' if question == 'adult_in_image' else 'yes'}]")
        page.click("#eligibility-continue")
        expect_view(page, "not-eligible")
        assert page.inner_text("#not-eligible-reasons") == S["not_eligible.reason.adult_in_image"]
        assert page.input_value("#country-not-eligible") == country
        names = page.eval_on_selector_all("#not-eligible-help > li > :first-child", "es => es.map(e => e.textContent)")
        assert names[0] == "Take It Down (NCMEC)" and names[1] == CHILD_LINE[country], names
        walk.step("not-eligible")

        # Files: a photo, fingerprinted here.
        page.click("#view-not-eligible a[href='#eligibility']")
        page.check("input[name=adult_in_image][value=yes]")
        page.click("#eligibility-continue")
        expect_view(page, "files")
        page.set_input_files("#file-input", {"name": "photo.png", "mimeType": "image/png",
                                             "buffer": picture(LANGUAGES.index((lang, locale, country)))})
        wait_until(page, "document.querySelector('.file-item[data-status=done]') !== null")
        assert page.is_enabled("#submit-fingerprints")
        walk.step("files")

        # Codes.
        page.click("#submit-fingerprints")
        page.wait_for_selector("#view-codes:not([hidden]), #submit-error:not([hidden])")
        assert page.is_hidden("#submit-error"), page.inner_text("#submit-error")
        own = {"case_number": page.inner_text("#case-number"), "pin": page.inner_text("#case-pin")}
        walk.step("codes")
        page.check("#codes-saved")
        page.click("#codes-done")
        expect_view(page, "welcome")

        # Status of the case with platform verdicts: the operator's name for the platform,
        # each verdict with its count and day.
        page.click("#view-welcome a[href='#status']")
        fill_codes(page, "status", feedback_case)
        page.click("#status-form button[type=submit]")
        page.wait_for_selector("#status-result:not([hidden])")
        feedback = page.inner_text("#status-feedback")
        assert "Example Social" in feedback and "Totally Official" not in feedback
        lines = page.eval_on_selector_all("#status-feedback ul li", "items => items.map(i => i.textContent)")
        assert len(lines) == 2 and lines[0].startswith(S["verdict.removed"]), lines
        assert lines[1].startswith(S["verdict.matched-pending-review"]), lines
        today = page.evaluate("(async () => (await import('/i18n.js')).formatDay(new Date().toISOString().slice(0, 10)))()")
        assert all(today in line for line in lines), (today, lines)
        assert page.is_visible("#status-withdraw-link")
        walk.step("status")

        # Withdrawal of our own case, with the codes carried from the status.
        fill_codes(page, "status", own)
        page.click("#status-form button[type=submit]")
        page.wait_for_selector("#status-result:not([hidden])")
        page.click("#status-withdraw-link")
        expect_view(page, "withdraw")
        assert page.input_value("#withdraw-case") == own["case_number"]
        page.click("#withdraw-ask")
        page.wait_for_selector("#withdraw-confirm:not([hidden])")
        walk.step("withdraw-confirm")
        page.click("#withdraw-yes")
        page.wait_for_selector("#withdraw-result:not([hidden])")
        walk.step("withdrawn")
        # The withdrawal's receipt, saved, then checked on the device in the page's language.
        with page.expect_download() as download:
            page.click("#download-withdrawal-receipt")
        receipt = tmp_path / "receipt.tlog-proof"
        download.value.save_as(receipt)
        page.click("#withdraw-result a[href='#welcome']")
        expect_view(page, "welcome")
        page.click("#view-welcome a[href='#receipt']")
        expect_view(page, "receipt")
        page.set_input_files("#receipt-input", str(receipt))
        page.wait_for_selector("#receipt-result:not([hidden])")
        assert page.inner_text("#receipt-result-title") == S["receipt.valid"]
        walk.step("receipt")
        page.click("#view-receipt a[href='#welcome']")
        expect_view(page, "welcome")
        page.click("#view-welcome a[href='#status']")
        expect_view(page, "status")
        fill_codes(page, "status", own)
        page.click("#status-form button[type=submit]")
        page.wait_for_selector("#status-result:not([hidden])")
        assert page.is_hidden("#status-withdraw-link")  # nothing to withdraw any more

        # Other help, for the person's country; questions and answers.
        page.click(".footer-links a[href='#help']")
        expect_view(page, "help")
        assert page.input_value("#country-help") == country
        assert page.locator("#view-help .emergency-list li").count() >= 1
        walk.step("help")
        page.click(".footer-links a[href='#faq']")
        expect_view(page, "faq")
        assert page.locator(".faq-item").count() == len(S["faq.items"])
        page.click(".faq-item >> nth=0")
        walk.step("faq")

        # Only the contract left the browser; nothing went wrong on the page; no step
        # added a history entry.
        posts = check_requests(requests, helpline.base_url)
        assert [path for path, _ in posts] == ["/v1/cases", "/v1/cases/status", "/v1/cases/status",
                                               "/v1/cases/withdraw", "/v1/cases/status"]
        assert posts[0][1]["lang"] == lang
        assert not errors and not console_errors, (errors, console_errors)
        assert page.evaluate("history.length") == history_length
        timings[lang] = time.perf_counter() - started
        print(f"\n{lang}: {walk.number} steps in {timings[lang]:.1f} s (axe-core {walk.axe_seconds:.1f} s)")
    finally:
        context.close()


def fill_codes(page, prefix: str, codes: dict):
    page.fill(f"#{prefix}-case", codes["case_number"])
    page.fill(f"#{prefix}-pin", codes["pin"])


def check_right_to_left(page):
    """Arabic mirrors the layout: the helpline's name on the right, the notices' rule
    on the right, text aligned right; codes stay left to right."""
    boxes = page.evaluate("""() => {
      const box = (s) => document.querySelector(s).getBoundingClientRect();
      const notice = getComputedStyle(document.querySelector('#view-welcome .notice'));
      return { name: box('#site-name').left, exit: box('#quick-exit').left,
               right: notice.borderRightWidth, left: notice.borderLeftWidth,
               align: getComputedStyle(document.querySelector('#view-welcome p')).textAlign,
               codes: getComputedStyle(document.querySelector('#case-number')).direction };
    }""")
    assert boxes["name"] > boxes["exit"], boxes
    assert boxes["right"] == "6px" and boxes["left"] == "0px", boxes
    assert boxes["align"] in ("start", "right"), boxes
    assert boxes["codes"] == "ltr", boxes


def test_plural_forms_cover_every_number_in_every_language(browser, helpline):
    """Each plural string has every form the language's rules (Intl.PluralRules, as the
    page uses them) choose for 0 to 1,000: Arabic has six."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(helpline.base_url + "/")
        needed = page.evaluate("""(langs) => Object.fromEntries(langs.map((lang) => {
            const rules = new Intl.PluralRules(lang);
            return [lang, [...new Set(Array.from({ length: 1001 }, (_, n) => rules.select(n)))].sort()];
        }))""", [lang for lang, _, _ in LANGUAGES])
    finally:
        context.close()
    assert needed["ar"] == ["few", "many", "one", "other", "two", "zero"]
    for lang, forms in needed.items():
        for key, value in strings_of(lang).items():
            if isinstance(value, dict):
                assert set(forms) <= set(value), (lang, key, sorted(set(forms) - set(value)))


def test_report_what_axe_found_below_serious():
    """Prints what axe-core reported below "serious" (moderate, minor), for the record."""
    for finding, where in sorted(minor_findings.items()):
        print(f"axe-core: {finding} on {len(where)} steps, e.g. {sorted(where)[:3]}")
    if timings:
        print(f"languages walked: {len(timings)}, {sum(timings.values()):.1f} s in all")
