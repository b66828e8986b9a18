"""The victim web page end to end, in Debian's chromium.

- the whole flow in French on a phone-sized screen: five questions, several photos
  and a video, fingerprints, case number and PIN (saved as a text file), status,
  withdrawal with the codes carried from the status and a confirmation; a
  screenshot of each step in test-artifacts/browser/; no step adds a history entry;
- every request the page makes is kept: all go to 127.0.0.1, and the only bodies
  are JSON of the contract's shape (no image or video bytes, no file names); the
  video is sent as its MD5 and its vPDQ, which matches node.hashing's;
- the kind "not eligible" page in English with the help of the person's country,
  the language menu, the choice of language;
- quick exit (the button, Esc twice): Back does not return to the page;
- keyboard use, labels, visible focus and contrast;
- static checks: every language complete and translated, French typography, no
  external resource in the page.
(test_webapp_languages.py: every step in every language, with axe-core.)
"""
from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from webapp_support import (
    CONFORMANCE,
    post_json,
    STATIC,
    ThreadedNode,
    check_requests,
    distance,
    expect_view,
    python_pdq,
    read_log,
    shoot,
    wait_until,
)

PHONE = {"width": 390, "height": 844}
QUESTIONS = ("in_image", "adult", "adult_in_image", "has_image", "intimate")
YES = dict.fromkeys(QUESTIONS, True)


# ---------------------------------------------------------------- the whole flow

def test_whole_flow_in_french_on_a_phone(open_page, web_server, recorder, artifacts, conformance_pdq, tmp_path):
    page, requests = open_page(locale="fr-FR", viewport=PHONE)
    server_seen = len(recorder.requests)
    history_length = page.evaluate("history.length")

    # Welcome, in French because the browser prefers French.
    assert page.evaluate("document.documentElement.lang") == "fr"
    assert page.inner_text("#welcome-title") == "Nous sommes là pour vous aider"
    shoot(page, artifacts, "01-accueil")

    # Questions: continuing without answers says so, kindly, and marks them.
    page.click("#start")
    expect_view(page, "eligibility")
    page.click("#eligibility-continue")
    assert page.is_visible("#eligibility-error")
    assert page.locator(".question.unanswered").count() == 5
    shoot(page, artifacts, "02-questions-sans-reponse")
    # Answer with the keyboard only: Space picks "Oui", Tab goes to the next question.
    page.focus("input[name=in_image][value=yes]")
    for _ in range(4):
        page.keyboard.press("Space")
        page.keyboard.press("Tab")
    page.keyboard.press("Space")
    assert page.evaluate("[...document.querySelectorAll('input[value=yes]')].every(i => i.checked)")
    assert page.locator(".question.unanswered").count() == 0 and page.is_hidden("#eligibility-error")
    shoot(page, artifacts, "03-questions")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "eligibility-continue"
    page.keyboard.press("Enter")
    page.wait_for_selector("#view-files:not([hidden])")

    # Files: several photos (one tiny and flat, one 12 MP with EXIF rotation),
    # the same photo twice, a video, and something that is not a picture.
    photos = ["bridge-mods/aaa-orig.jpg", "misc-images/small.jpg", "reg-test-input/exif-rotn/exif-rotn-6.jpg",
              "misc-images/wee.jpg"]
    video = CONFORMANCE / "video" / "chair-19-sd-bar.mp4"
    files = [str(conformance_pdq / name) for name in photos]
    page.set_input_files("#file-input", files)
    page.set_input_files("#file-input", [
        {"name": "copie.jpg", "mimeType": "image/jpeg", "buffer": (conformance_pdq / photos[0]).read_bytes()},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"},
    ])
    page.set_input_files("#file-input", str(video))
    wait_until(page, "document.querySelectorAll('.file-item[data-status=done], .file-item[data-status=error]').length === 7")
    assert page.locator(".file-item").count() == 7
    assert page.is_enabled("#submit-fingerprints")
    assert page.locator(".file-item canvas.thumb").count() == 6  # local previews: photos, the video's first frame
    progress = page.inner_text("#progress")
    assert "6 empreintes prêtes" in progress and "1 fichier n'a pas pu être lu" in progress, progress
    video_state = page.inner_text(".file-item[data-kind=video] .file-state")
    assert "copie exacte, et 19 images de la vidéo" in video_state, video_state
    shoot(page, artifacts, "04-fichiers")

    # What will be sent, as shown to the person, is exactly the contract and the right fingerprints.
    shown = json.loads(page.text_content("#payload-preview"))
    assert shown["eligibility"] == YES
    assert shown["lang"] == "fr"
    pdqs = [f for f in shown["fingerprints"] if f["signal"] == "pdq"]
    md5s = [f for f in shown["fingerprints"] if f["signal"] == "md5"]
    vpdqs = [f for f in shown["fingerprints"] if f["signal"] == "vpdq"]
    assert len(pdqs) == 4 and len(md5s) == 1 and len(vpdqs) == 1  # the copy is sent once
    for name, sent in zip(photos, pdqs):
        expected_hex, expected_quality = python_pdq(conformance_pdq / name)
        assert distance(expected_hex, sent["fingerprint"]) <= 10, name
        assert sent["quality"] == expected_quality
        assert sent.get("low_quality", False) == (expected_quality < 50)
    assert md5s[0]["fingerprint"] == hashlib.md5(video.read_bytes()).hexdigest()
    # The video's vPDQ: the frames node.hashing takes, matching its fingerprint under the VPDQ rule.
    from node.hashing.videos import hash_video_file
    from protocol.signals import VPDQ

    expected_vpdq = hash_video_file(video)[1]["fingerprint"]
    assert [f["timestamp"] for f in vpdqs[0]["fingerprint"]] == [f["timestamp"] for f in expected_vpdq]
    sent_vpdq, expected_vpdq = VPDQ.parse_json(vpdqs[0]["fingerprint"]), VPDQ.parse_json(expected_vpdq)
    assert VPDQ.matches(sent_vpdq, expected_vpdq) and VPDQ.matches(expected_vpdq, sent_vpdq)

    # Send: the case number and PIN, with the "write these down" step.
    page.click("#submit-fingerprints")
    page.wait_for_selector("#view-codes:not([hidden]), #submit-error:not([hidden])")
    assert page.is_hidden("#submit-error"), page.inner_text("#submit-error")
    case_number = page.inner_text("#case-number")
    pin = page.inner_text("#case-pin")
    assert re.fullmatch(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}", case_number)
    assert re.fullmatch(r"\d{8}", pin)
    assert "6 empreintes reçues" in page.inner_text("#codes-summary")
    assert "1 empreinte est de faible qualité" in page.inner_text("#codes-summary")
    assert page.is_visible("text=Ils ne pourront pas être retrouvés")
    # The node published exactly those fingerprints in its signed log.
    from protocol.entries import Submission, Withdrawal, decode_entry
    from protocol.signals import SIGNALS

    def canonical(fingerprint):  # the entry's bytes of a fingerprint object, as hex
        return SIGNALS[fingerprint["signal"]].parse_json(fingerprint["fingerprint"]).hex()

    entries = [decode_entry(e) for e in read_log(web_server)]
    published = {i: e for i, e in enumerate(entries) if isinstance(e, Submission)}
    mine = {i: e for i, e in published.items()
            if (e.signal, e.fingerprint.hex()) in {(f["signal"], canonical(f)) for f in shown["fingerprints"]}}
    assert len(mine) == 6
    assert {(e.signal, e.fingerprint.hex(), e.quality) for e in mine.values()} == {
        (f["signal"], canonical(f), f.get("quality")) for f in shown["fingerprints"]}
    shoot(page, artifacts, "05-numero-et-pin")

    # Back on this step would leave the page and lose the codes: the browser asks
    # first (beforeunload); staying keeps them on screen.
    dialogs = []

    def stay(dialog):
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", stay)
    try:
        page.go_back(timeout=2_000)
    except PlaywrightTimeout:
        pass  # no navigation: the person stayed
    page.remove_listener("dialog", stay)
    assert dialogs == ["beforeunload"]
    assert page.inner_text("#case-number") == case_number and page.url.endswith("#codes")

    # Printing shows the codes, not the page's header or buttons.
    page.emulate_media(media="print")
    assert page.is_visible("#case-number") and page.is_visible("#case-pin")
    assert page.is_hidden(".site-header") and page.is_hidden("#download-codes")
    page.emulate_media(media="screen")

    # Save them as a text file made in the page.
    with page.expect_download() as download_info:
        page.click("#download-codes")
    saved = tmp_path / "codes.txt"
    download_info.value.save_as(saved)
    text = saved.read_text("utf-8")
    assert f"Numéro de dossier\u00a0: {case_number}" in text and f"Code PIN\u00a0: {pin}" in text
    assert "#status" in text
    assert download_info.value.suggested_filename == f"dossier-{case_number}.txt"

    # Finishing needs the "I have saved them" box.
    assert page.is_disabled("#codes-done")
    page.check("#codes-saved")
    page.click("#codes-done")
    expect_view(page, "welcome")
    assert page.is_visible("#finished-message")
    shoot(page, artifacts, "06-termine")
    # Going back to the questions does not look as if nothing happened: the case exists.
    page.click("#start")
    expect_view(page, "eligibility")
    assert "vient d'être enregistrée" in page.inner_text("#view-eligibility .case-exists")
    assert page.is_visible("#view-eligibility .case-exists")
    page.click("#view-eligibility a[href='#welcome']")

    # Status: a wrong PIN is refused kindly, the right one shows the case.
    page.click("a[href='#status']")
    page.fill("#status-case", case_number.lower().replace("-", " "))  # typed loosely
    page.fill("#status-pin", "00000000" if pin != "00000000" else "11111111")
    page.click("#status-form button[type=submit]")
    page.wait_for_selector("#status-error:not([hidden])")
    assert "n'est pas reconnu" in page.inner_text("#status-error")
    page.fill("#status-pin", pin)
    page.click("#status-form button[type=submit]")
    page.wait_for_selector("#status-result:not([hidden])")
    assert "Votre demande est active" in page.inner_text("#status-state")
    assert "6 empreintes dans votre dossier. 6 déjà transmises" in page.inner_text("#status-counts").replace("\u00a0", " ")
    assert "Aucune plateforme n'a encore signalé" in page.inner_text("#status-feedback")
    shoot(page, artifacts, "07-suivi")

    # Withdraw ("Annuler cette demande"): the codes just checked come along; a
    # confirmation step can be cancelled.
    page.click("#status-withdraw-link")
    expect_view(page, "withdraw")
    assert page.input_value("#withdraw-case") == case_number and page.input_value("#withdraw-pin") == pin
    assert page.inner_text("#withdraw-ask") == "Annuler ma demande"
    page.click("#withdraw-ask")
    assert page.is_visible("#withdraw-confirm")
    page.click("#withdraw-no")
    assert not page.is_visible("#withdraw-confirm")
    assert not any(isinstance(decode_entry(e), Withdrawal) for e in read_log(web_server))
    page.click("#withdraw-ask")
    shoot(page, artifacts, "08-retrait-confirmation")
    page.click("#withdraw-yes")
    page.wait_for_selector("#withdraw-result:not([hidden])")
    withdrawn = {t for e in map(decode_entry, read_log(web_server)) if isinstance(e, Withdrawal) for t in e.targets}
    assert withdrawn == set(mine)
    shoot(page, artifacts, "09-retire")

    page.goto(web_server.base_url + "/?lang=fr#status")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#status-case", case_number)
    page.fill("#status-pin", pin)
    page.click("#status-form button[type=submit]")
    page.wait_for_selector("#status-result:not([hidden])")
    assert "Votre demande a été annulée le " in page.inner_text("#status-state")
    assert page.is_hidden("#status-withdraw-link")  # no withdrawal offered for a withdrawn case

    # What left the browser: only fingerprints, only to the helpline on loopback.
    posts = check_requests(requests, web_server.base_url)
    assert [path for path, _ in posts] == ["/v1/cases", "/v1/cases/status", "/v1/cases/status",
                                           "/v1/cases/withdraw", "/v1/cases/status"]
    assert posts[0][1] == shown
    sent_text = json.dumps(posts)
    assert not any(Path(name).name in sent_text for name in photos + ["notes.txt", "copie.jpg", video.name])
    assert '"signal": "vpdq"' in sent_text
    # Not a byte of the video went out: no request body holds any 32-byte piece of it.
    video_bytes = video.read_bytes()
    pieces = [video_bytes[offset:offset + 32] for offset in range(0, len(video_bytes) - 32, len(video_bytes) // 97)]
    for request in requests:
        body = request.post_data_buffer or b""
        assert not any(piece in body for piece in pieces), request.url
    # And what the node saw agrees: bodyless GETs and small JSON POSTs, nothing else.
    seen = recorder.requests[server_seen:]
    assert [r.path for r in seen if r.method == "POST"] == [path for path, _ in posts]
    for request in seen:
        if request.method == "GET":
            assert not request.content_length
        else:
            assert request.content_type == "application/json" and 0 < request.content_length < 16_384
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert not page.errors, page.errors
    # No step of the flow left a history entry (the reload above is the only one).
    assert page.evaluate("history.length") == history_length + 1


# ---------------------------------------------------------------- not eligible, languages

def switch_language(page, lang: str):
    page.click("#language-menu summary")
    page.click(f"#language-list button[data-lang={lang}]")
    page.wait_for_selector(f"html[lang={lang}]", state="attached")


def test_not_eligible_page_in_english_and_switching_language(open_page, web_server, artifacts):
    page, requests = open_page(locale="en-US")  # a browser in the United States
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.inner_text("#welcome-title") == "We are here to help"
    page.click("#start")
    answers = {**dict.fromkeys(QUESTIONS, "yes"), "adult": "no"}
    for question, answer in answers.items():
        page.check(f"input[name={question}][value={answer}]")
    page.click("#eligibility-continue")
    expect_view(page, "not-eligible")
    assert "you are not alone" in page.inner_text("#not-eligible-title")
    assert "If you are under 18" in page.inner_text("#not-eligible-reasons")
    # Under 18: Take It Down first, then the child protection services of the person's country.
    assert page.input_value("#country-not-eligible") == "US"
    links = page.eval_on_selector_all("#not-eligible-help a", "as => as.map(a => [a.textContent, a.rel, a.href])")
    names = [name for name, _, _ in links]
    assert names[0] == "Take It Down (NCMEC)", names
    assert "NCMEC CyberTipline" in names and "Childhelp National Child Abuse Hotline" in names
    assert "Cyber Civil Rights Initiative" not in names  # an adults' service: never for images of minors
    assert all(rel == "noopener noreferrer" for name, rel, href in links if href.startswith("http"))
    assert "tel:18004224453" in [href for _, _, href in links]
    assert page.is_visible("text=In immediate danger?")
    assert "911" in page.inner_text("#view-not-eligible .emergency-list")
    shoot(page, artifacts, "10-not-eligible-en")
    # Another country: its own services and numbers.
    page.select_option("#country-not-eligible", "BE")
    assert "Child Focus" in page.inner_text("#not-eligible-help")
    assert "101" in page.inner_text("#view-not-eligible .emergency-list")

    # The language menu changes the language in place, keeping the step.
    switch_language(page, "fr")
    expect_view(page, "not-eligible")
    assert "vous n'êtes pas seul" in page.inner_text("#not-eligible-title")
    assert "moins de 18\u00a0ans" in page.inner_text("#not-eligible-reasons")
    assert page.inner_text("#country-not-eligible option[value=BE]") == "Belgique"
    assert "lang=fr" in page.url
    shoot(page, artifacts, "11-non-eligible-fr")
    switch_language(page, "en")

    # Changing an answer goes back to the questions, answers kept.
    page.click("#view-not-eligible a[href='#eligibility']")
    assert page.is_checked("input[name=adult][value=no]")
    # An adult today whose image was taken at 16 is sent to the same help, never to this service.
    page.check("input[name=adult][value=yes]")
    page.check("input[name=adult_in_image][value=no]")
    page.click("#eligibility-continue")
    expect_view(page, "not-eligible")
    assert "before you were 18" in page.inner_text("#not-eligible-reasons")
    assert page.inner_text("#not-eligible-help a >> nth=0") == "Take It Down (NCMEC)"
    # No link was followed: nothing but the page's own files was fetched.
    assert check_requests(requests, web_server.base_url) == []


NEUTRAL = "https://search.example/"


def open_after_a_neutral_page(browser, web_server):
    """A page whose history holds another site first, then the helpline's page."""
    context = browser.new_context(locale="fr-FR", service_workers="block")
    context.route(NEUTRAL + "**", lambda route: route.fulfill(body="<p>recherche</p>", content_type="text/html"))
    # The quick-exit site must not really be fetched either: answered from here.
    context.route("https://fr.wikipedia.org/**", lambda route: route.fulfill(body="<p>ailleurs</p>",
                                                                              content_type="text/html"))
    page = context.new_page()
    page.goto(NEUTRAL)
    page.goto(web_server.base_url + "/")
    page.wait_for_selector("body[data-ready=true]")
    return context, page


def test_quick_exit_leaves_no_way_back(browser, web_server):
    context, page = open_after_a_neutral_page(browser, web_server)
    try:
        length = page.evaluate("history.length")  # the neutral site's entry, then the page's
        titles = [page.title()]
        # Steps leave no history entry, and no title that says what the page is about.
        page.click("#start")
        expect_view(page, "eligibility")
        for question in QUESTIONS:
            page.check(f"input[name={question}][value=yes]")
        page.click("#eligibility-continue")
        expect_view(page, "files")
        titles.append(page.title())
        page.click("#view-files a[href='#eligibility']")
        titles.append(page.title())
        assert page.evaluate("history.length") == length
        assert all(not re.search(r"intim|image|retrait|nu", title, re.I) for title in titles), titles
        assert titles[0] == "Accueil – Aide en ligne"
        with page.expect_navigation():
            page.click("#quick-exit")
        assert page.url == "https://fr.wikipedia.org/"
        # The page was replaced in the history: Back goes to the site before it.
        page.go_back()
        assert page.url == NEUTRAL
    finally:
        context.close()


def test_escape_twice_is_a_quick_exit(browser, web_server):
    context, page = open_after_a_neutral_page(browser, web_server)
    try:
        page.click("#start")
        expect_view(page, "eligibility")
        page.keyboard.press("Escape")  # once: nothing happens
        page.wait_for_timeout(100)
        assert page.url.startswith(web_server.base_url)
        with page.expect_navigation():
            page.keyboard.press("Escape")
        assert page.url == "https://fr.wikipedia.org/"
        page.go_back()
        assert page.url == NEUTRAL
        # The tip that says so is on the welcome page, and the button's title.
        page.goto(web_server.base_url + "/?lang=en")
        page.wait_for_selector("body[data-ready=true]")
        assert "press Esc twice" in page.inner_text("#view-welcome")
        assert "Esc twice" in page.get_attribute("#quick-exit", "title")
    finally:
        context.close()


def test_wrong_pins_are_slowed_down_kindly(open_page, tmp_path, recorder):
    # A node of its own: the failed-PIN counters must not touch the other tests.
    with ThreadedNode(tmp_path / "helpline", recorder) as node:
        page, _ = open_page(locale="en-US", path="/#status", base_url=node.base_url)
        expect_view(page, "status")
        fingerprint = {"signal": "md5", "fingerprint": "0" * 31 + "1"}
        status, case = post_json(node.base_url, "/v1/cases", {"eligibility": YES, "fingerprints": [fingerprint],
                                                              "lang": "en"})
        assert status == 201, case
        wrong = "00000000" if case["pin"] != "00000000" else "11111111"
        page.fill("#status-case", case["case_number"])
        messages = []
        for _ in range(5):
            page.fill("#status-pin", wrong)
            with page.expect_response("**/v1/cases/status"):
                page.click("#status-form button[type=submit]")
            page.wait_for_selector("#status-error:not([hidden])")
            messages.append(page.inner_text("#status-error"))
        assert messages[0].startswith("The case number or PIN is not recognised")
        assert messages[-1].startswith("Please wait") and "second" in messages[-1], messages
        shoot(page, artifacts=Path(__file__).resolve().parents[2] / "test-artifacts" / "browser", name="13-slowed-down")
        page.close()


def test_language_choice(open_page):
    page, _ = open_page(locale="en-GB")
    choices = page.evaluate("""async () => {
        const { preferredLanguage } = await import('/i18n.js');
        return [
          preferredLanguage(['de-DE', 'fr-CA', 'en'], ''),
          preferredLanguage(['en-GB', 'fr'], ''),
          preferredLanguage(['es'], ''),
          preferredLanguage(['nl-BE', 'ar-MA', 'fr'], ''),
          preferredLanguage(['pt-BR'], ''),
          preferredLanguage(['ja', 'ko'], ''),
          preferredLanguage(['en'], '?lang=it'),
          preferredLanguage(['fr'], '?lang=xx'),
        ];
    }""")
    assert choices == ["de", "en", "es", "ar", "pt", "en", "it", "fr"]


# ---------------------------------------------------------------- accessibility

CONTRAST_JS = """
() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = parse(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const el of document.querySelectorAll('p, h1, h2, li, a, button, label, legend, dt, dd, summary, span, strong')) {
    if (!el.offsetParent || !el.textContent.trim() || el.disabled) continue;
    const fg = parse(getComputedStyle(el).color).slice(0, 3);
    const [l1, l2] = [lum(fg), lum(background(el))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    if (ratio < 4.5) failures.push([el.tagName, el.textContent.trim().slice(0, 30), ratio.toFixed(2)]);
  }
  return failures;
}
"""

NAMES_JS = """
() => [...document.querySelectorAll('input, button, a[href], summary')]
  .filter((el) => el.type !== 'hidden')
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
  .map((el) => el.outerHTML.slice(0, 80))
"""


def test_labels_focus_and_contrast(open_page, artifacts):
    page, _ = open_page(locale="fr-FR")
    for view in ("welcome", "eligibility", "status", "withdraw", "help", "faq"):
        page.evaluate(f"location.hash = '#{view}'")
        page.wait_for_selector(f"#view-{view}:not([hidden])")
        assert page.evaluate(CONTRAST_JS) == [], view
        assert page.evaluate(NAMES_JS) == [], view
    # The views behind the questions and the picked files too.
    page.evaluate("location.hash = '#eligibility'")
    for question in QUESTIONS:
        page.check(f"input[name={question}][value=yes]")
    page.click("#eligibility-continue")
    expect_view(page, "files")
    assert page.evaluate(CONTRAST_JS) == []
    assert page.evaluate(NAMES_JS) == []
    assert page.get_attribute("#progress", "aria-live") == "polite"

    # Keyboard focus is visible: a thick outline on whatever Tab reaches.
    page.evaluate("location.hash = '#welcome'")
    page.wait_for_selector("#view-welcome:not([hidden])")
    page.focus("#welcome-title")
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
        return [document.activeElement.id, s.outlineStyle, parseFloat(s.outlineWidth)]; }""")
    assert focused[0] == "start" and focused[1] == "solid" and focused[2] >= 2, focused
    shoot(page, artifacts, "12-focus-visible")
    # The skip link is the first thing Tab reaches from the top, and moves focus to the content.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # The favicon is there: no console error for it on any load.
    assert page.evaluate("fetch('/favicon.svg').then(r => r.status)") == 200
    assert page.evaluate("fetch('/favicon.ico').then(r => r.status)") == 200


# ---------------------------------------------------------------- static checks (no browser)

I18N = STATIC / "i18n"
#: The few strings that are the same word in English and in another language.
SAME_AS_ENGLISH = {
    "es": {"codes.pin", "form.pin", "answer.no"},
    "de": {"codes.pin", "form.pin", "files.video_badge"},
    "it": {"codes.pin", "form.pin", "answer.no", "files.video_badge"},
    "pt": {"codes.pin", "form.pin"},
}
PLURAL_FORMS = {"zero", "one", "two", "few", "many", "other"}


def page_languages() -> list[str]:
    source = (STATIC / "i18n.js").read_text("utf-8")
    return re.findall(r"'(\w\w)'", re.search(r"export const LANGUAGES = \[([^\]]*)\]", source).group(1))


def strings_of(lang: str) -> dict:
    return json.loads((I18N / f"{lang}.json").read_text("utf-8"))


def leaves(value, path=()):
    """Every string of a translation, with where it is (key, plural form or list index, field)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, path + (index,))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, path + (key,))


def translation_keys_used():
    html = (STATIC / "index.html").read_text("utf-8")
    keys = set(re.findall(r'data-i18n="([^"]+)"', html))
    for attrs in re.findall(r'data-i18n-attr="([^"]+)"', html):
        keys |= {pair.split(":")[1] for pair in attrs.split(";")}
    for script in STATIC.glob("*.js"):
        keys |= set(re.findall(r"\bt\('([\w.\-]+)'", script.read_text("utf-8")))
    # Keys built from a value: every value they can take.
    from node.cases.resources import EMERGENCY_KINDS, KINDS

    keys |= {f"not_eligible.reason.{q}" for q in QUESTIONS}
    keys |= {f"files.error.{e}" for e in ("unreadable_image", "too_small", "unsupported", "failed")}
    keys |= {f"files.video.{e}" for e in ("video_unreadable", "video_failed", "video_timeout", "video_too_long",
                                          "video_too_large", "video_no_picture")}
    keys |= {f"status.state.{s}" for s in ("active", "withdrawn", "withdrawn_on")}
    keys |= {f"verdict.{v}" for v in ("matched-pending-review", "removed", "not-violating", "disputed-false-match")}
    keys |= {f"title.{view}" for view in re.findall(r'data-view="([\w-]+)"', html)}
    keys |= {f"kind.{kind}" for kind in KINDS} | {f"emergency.{kind}" for kind in EMERGENCY_KINDS}
    return keys


def placeholders(value) -> set[str]:
    if isinstance(value, dict):  # plural forms
        assert "other" in value and set(value) <= PLURAL_FORMS, value
        return set().union(*(placeholders(form) for form in value.values()))
    if isinstance(value, list):  # the questions and answers: [{"question", "answer"}, ...]
        return set().union(set(), *(placeholders(text) for item in value for text in item.values()))
    assert isinstance(value, str) and value.strip()
    return set(re.findall(r"\{(\w+)\}", value))


def test_every_language_has_every_key_and_nothing_left_in_english():
    from node.cases.resources import LANGUAGES

    assert page_languages() == list(LANGUAGES) == ["fr", "en", "es", "de", "it", "pt", "ar"]
    assert {path.stem for path in I18N.glob("*.json")} == set(LANGUAGES)
    english = strings_of("en")
    used = translation_keys_used()
    assert not used - set(english), f"keys used but not translated: {sorted(used - set(english))}"
    assert not set(english) - used, f"keys translated but never used: {sorted(set(english) - used)}"
    english_leaves = dict(leaves(english))
    for lang in LANGUAGES:
        strings = strings_of(lang)
        assert set(strings) == set(english), (lang, sorted(set(strings) ^ set(english)))
        for key, value in strings.items():
            assert placeholders(value) == placeholders(english[key]), (lang, key)
            if isinstance(value, list):
                assert len(value) == len(english[key]) and all(set(item) == {"question", "answer"} for item in value)
        if lang == "en":
            continue
        for path, text in leaves(strings):
            words = re.sub(r"\{\w+\}", "", text)
            if english_leaves.get(path) == text and re.search(r"[A-Za-z]", words):
                assert path[0] in SAME_AS_ENGLISH.get(lang, set()), f"{lang}: {path} is left in English: {text!r}"
    # Text in the HTML comes from the translation files only (the <noscript> note excepted).
    html = (STATIC / "index.html").read_text("utf-8")
    html = re.sub(r"<noscript>.*?</noscript>|<!--.*?-->|<script.*?</script>|<title.*?</title>", "", html, flags=re.S)
    stray = [text.strip() for text in re.findall(r">([^<]+)<", html) if text.strip()]
    assert stray == []


def test_french_typography():
    """Non-breaking spaces where French puts them: before ? ! ; : and %, inside « »,
    and between a number and its unit ("18 ans" never breaks)."""
    for path, text in leaves(strings_of("fr")):
        assert not re.search(r" [?!;:%»]|« ", text), (path, text)
        assert not re.search(r"[\d}] (ans|minutes?|secondes?)\b", text), (path, text)
        assert not re.search(r"\u00a0[?!;]", text), ("a narrow no-break space before ? ! ;", path, text)
    french = strings_of("fr")
    assert french["app.quick_exit"] == "Sortie rapide" and french["welcome.withdraw"] == "Annuler ma demande"
    assert french["codes.file.line"] == "{label}\u00a0: {value}"


def test_page_loads_nothing_from_elsewhere():
    for path in STATIC.rglob("*"):
        if path.suffix not in (".html", ".js", ".css"):
            continue
        text = path.read_text("utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{path.name} names another site"
        assert "@import" not in text
        # Nothing is kept on the device: no cookie, no web storage, no database.
        assert not re.search(r"\b(document\.cookie|localStorage|sessionStorage|indexedDB|caches)\s*[.\[=]", text), path.name
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', (STATIC / "index.html").read_text("utf-8")).group(1)
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
