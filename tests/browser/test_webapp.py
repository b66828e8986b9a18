"""The victim web page end to end, in Debian's chromium.

- the whole flow in French on a phone-sized screen: questions, several photos
  and a video, fingerprints, case number and PIN (saved as a text file), status,
  withdrawal with confirmation; a screenshot of each step in test-artifacts/browser/;
- every request the page makes is kept: all go to 127.0.0.1, and the only bodies
  are JSON of the contract's shape (no image or video bytes, no file names); the
  video is sent as its MD5 and its vPDQ, which matches node.hashing's;
- the kind "not eligible" page in English, the language switch, the choice of language;
- keyboard use, labels, visible focus and contrast;
- static checks: both translation files complete, no external resource in the page.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit


from webapp_support import CONFORMANCE, STATIC, ThreadedNode, contract_error, distance, python_pdq

PHONE = {"width": 390, "height": 844}
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"ftyp", b"GIF8", b"\x1aE\xdf\xa3", b"moov", b"mdat")


# ---------------------------------------------------------------- helpers

def shoot(page, artifacts: Path, name: str):
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    # Phone-sized screens: nothing may stick out sideways.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name}: page is {overflow}px wider than the screen"


def wait_until(page, expression: str, timeout: float = 30.0):
    # wait_for_function evaluates strings, which the page's CSP forbids: poll instead.
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => {expression}"):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def expect_view(page, name: str):
    # Views change on the address's hashchange event, a moment after the click.
    page.wait_for_selector(f"#view-{name}:not([hidden])", timeout=5_000)
    assert page.evaluate("document.querySelectorAll('.view:not([hidden])').length") == 1


def read_log(node) -> list:
    """The node's whole log, read over HTTP and verified with protocol/ only:
    signed checkpoint, entry bundles, Merkle root. Returns the decoded entries."""
    from protocol.checkpoint import open_checkpoint
    from protocol.entries import decode_entry
    from protocol.merkle import leaf_hash, root_of
    from protocol.note import Verifier
    from protocol.tiles import bundles_for_size, decode_bundle

    def get(path):
        with urllib.request.urlopen(f"{node.base_url}/{path}", timeout=10) as answer:
            return answer.read()

    checkpoint, _ = open_checkpoint(get("checkpoint"), [Verifier.from_vkey(node.log_vkey())])
    raw = []
    for bundle in bundles_for_size(checkpoint.size):
        raw += decode_bundle(get(bundle.path()), bundle.width)
    assert root_of([leaf_hash(entry) for entry in raw]) == checkpoint.root_hash
    return [decode_entry(entry) for entry in raw]


def check_requests(requests, base_url):
    """Every request stays on the loopback server; every body is contract JSON."""
    posts = []
    for request in requests:
        url = urlsplit(request.url)
        if url.scheme in ("blob", "data"):
            continue  # local to the browser (the text-file download), never on the network
        assert url.hostname == "127.0.0.1", f"request to another host: {request.url}"
        assert request.url.startswith(base_url)
        body = request.post_data_buffer
        if request.method == "GET":
            assert not body
            continue
        assert request.method == "POST", request.method
        assert url.path in ("/v1/cases", "/v1/cases/status", "/v1/cases/withdraw"), url.path
        assert request.headers.get("content-type", "").startswith("application/json")
        assert len(body) < 16_384
        assert not any(magic in body for magic in IMAGE_MAGIC)
        data = json.loads(body)
        if url.path == "/v1/cases":
            assert set(data) == {"eligibility", "fingerprints", "lang"}
            for fingerprint in data["fingerprints"]:
                assert contract_error(fingerprint) is None, (fingerprint, contract_error(fingerprint))
        else:
            assert set(data) == {"case_number", "pin"}
        posts.append((url.path, data))
    return posts


# ---------------------------------------------------------------- the whole flow

def test_whole_flow_in_french_on_a_phone(open_page, web_server, recorder, artifacts, conformance_pdq, tmp_path):
    page, requests = open_page(locale="fr-FR", viewport=PHONE)
    server_seen = len(recorder.requests)

    # Welcome, in French because the browser prefers French.
    assert page.evaluate("document.documentElement.lang") == "fr"
    assert page.inner_text("#welcome-title") == "Nous sommes là pour vous aider"
    shoot(page, artifacts, "01-accueil")

    # Questions: continuing without answers says so, kindly, and marks them.
    page.click("#start")
    expect_view(page, "eligibility")
    page.click("#eligibility-continue")
    assert page.is_visible("#eligibility-error")
    assert page.locator(".question.unanswered").count() == 4
    shoot(page, artifacts, "02-questions-sans-reponse")
    # Answer with the keyboard only: Space picks "Oui", Tab goes to the next question.
    page.focus("input[name=in_image][value=yes]")
    for _ in range(3):
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
    assert shown["eligibility"] == {"in_image": True, "adult": True, "has_image": True, "intimate": True}
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
    assert "Dont 1 de faible qualité" in page.inner_text("#codes-summary")
    assert page.is_visible("text=Ils ne pourront pas être retrouvés")
    # The node published exactly those fingerprints in its signed log.
    from protocol.entries import Submission, Withdrawal

    from protocol.signals import SIGNALS

    def canonical(fingerprint):  # the entry's bytes of a fingerprint object, as hex
        return SIGNALS[fingerprint["signal"]].parse_json(fingerprint["fingerprint"]).hex()

    entries = read_log(web_server)
    published = {i: e for i, e in enumerate(entries) if isinstance(e, Submission)}
    mine = {i: e for i, e in published.items()
            if (e.signal, e.fingerprint.hex()) in {(f["signal"], canonical(f)) for f in shown["fingerprints"]}}
    assert len(mine) == 6
    assert {(e.signal, e.fingerprint.hex(), e.quality) for e in mine.values()} == {
        (f["signal"], canonical(f), f.get("quality")) for f in shown["fingerprints"]}
    shoot(page, artifacts, "05-numero-et-pin")

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
    assert case_number in text and pin in text and "#status" in text
    assert download_info.value.suggested_filename == f"dossier-{case_number}.txt"

    # Finishing needs the "I have saved them" box.
    assert page.is_disabled("#codes-done")
    page.check("#codes-saved")
    page.click("#codes-done")
    expect_view(page, "welcome")
    assert page.is_visible("#finished-message")
    shoot(page, artifacts, "06-termine")

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
    assert "actif" in page.inner_text("#status-state")
    assert "6 empreintes dans votre dossier. 6 déjà publiées" in page.inner_text("#status-counts")
    assert "Aucune plateforme n'a encore signalé" in page.inner_text("#status-feedback")
    shoot(page, artifacts, "07-suivi")

    # Withdraw, with a confirmation step that can be cancelled.
    page.click("#status-result a[href='#withdraw']")
    page.fill("#withdraw-case", case_number)
    page.fill("#withdraw-pin", pin)
    page.click("#withdraw-ask")
    assert page.is_visible("#withdraw-confirm")
    page.click("#withdraw-no")
    assert not page.is_visible("#withdraw-confirm")
    assert not any(isinstance(e, Withdrawal) for e in read_log(web_server))
    page.click("#withdraw-ask")
    shoot(page, artifacts, "08-retrait-confirmation")
    page.click("#withdraw-yes")
    page.wait_for_selector("#withdraw-result:not([hidden])")
    withdrawn = {t for e in read_log(web_server) if isinstance(e, Withdrawal) for t in e.targets}
    assert withdrawn == set(mine)
    shoot(page, artifacts, "09-retire")

    page.goto(web_server.base_url + "/?lang=fr#status")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#status-case", case_number)
    page.fill("#status-pin", pin)
    page.click("#status-form button[type=submit]")
    page.wait_for_selector("#status-result:not([hidden])")
    assert "retiré" in page.inner_text("#status-state")

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


# ---------------------------------------------------------------- not eligible, languages

def test_not_eligible_page_in_english_and_switching_language(open_page, web_server, artifacts):
    page, requests = open_page(locale="en-US")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.inner_text("#welcome-title") == "We are here to help"
    page.click("#start")
    for question, answer in (("in_image", "yes"), ("adult", "no"), ("has_image", "yes"), ("intimate", "yes")):
        page.check(f"input[name={question}][value={answer}]")
    page.click("#eligibility-continue")
    expect_view(page, "not-eligible")
    assert "you are not alone" in page.inner_text("#not-eligible-title")
    assert "If you are under 18" in page.inner_text("#not-eligible-reasons")
    links = page.eval_on_selector_all("#help-list a", "as => as.map(a => [a.textContent, a.rel, a.href])")
    assert len(links) >= 3 and all(rel == "noopener noreferrer" for _, rel, _ in links)
    assert any("Take It Down" in name for name, _, _ in links)
    assert page.is_visible("text=immediate danger")
    shoot(page, artifacts, "10-not-eligible-en")

    page.click("#language-switch")
    page.wait_for_selector("html[lang=fr]", state="attached")
    expect_view(page, "not-eligible")
    assert "vous n'êtes pas seul" in page.inner_text("#not-eligible-title")
    assert "moins de 18 ans" in page.inner_text("#not-eligible-reasons")
    assert "lang=fr" in page.url
    shoot(page, artifacts, "11-non-eligible-fr")
    page.click("#language-switch")
    page.wait_for_selector("html[lang=en]", state="attached")

    # Changing an answer goes back to the questions, answers kept.
    page.click("#view-not-eligible a[href='#eligibility']")
    assert page.is_checked("input[name=adult][value=no]")
    # No link was followed: nothing but the page's own files was fetched.
    assert check_requests(requests, web_server.base_url) == []


def test_quick_exit_leaves_at_once(open_page):
    page, _ = open_page(locale="fr-FR")
    # The neutral site must not really be fetched: answer it from here.
    page.route("https://fr.wikipedia.org/**", lambda route: route.fulfill(body="<p>ailleurs</p>", content_type="text/html"))
    with page.expect_navigation():
        page.click("#quick-exit")
    assert page.url == "https://fr.wikipedia.org/"
    # The page was replaced in the history: Back does not return to it.
    page.go_back()
    assert "127.0.0.1" not in page.url


def test_wrong_pins_are_slowed_down_kindly(open_page, tmp_path, recorder):
    # A node of its own: the failed-PIN counters must not touch the other tests.
    with ThreadedNode(tmp_path / "helpline", recorder) as node:
        page, _ = open_page(locale="en-US", path="/#status", base_url=node.base_url)
        expect_view(page, "status")
        fingerprint = {"signal": "md5", "fingerprint": "0" * 31 + "1"}
        request = urllib.request.Request(
            node.base_url + "/v1/cases", headers={"Content-Type": "application/json"},
            data=json.dumps({"eligibility": dict.fromkeys(("in_image", "adult", "has_image", "intimate"), True),
                             "fingerprints": [fingerprint], "lang": "en"}).encode())
        with urllib.request.urlopen(request, timeout=10) as answer:
            case = json.load(answer)
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
          preferredLanguage(['en'], '?lang=fr'),
          preferredLanguage(['fr'], '?lang=xx'),
        ];
    }""")
    assert choices == ["fr", "en", "en", "fr", "fr"]


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
    for view in ("welcome", "eligibility", "status", "withdraw"):
        page.evaluate(f"location.hash = '#{view}'")
        page.wait_for_selector(f"#view-{view}:not([hidden])")
        assert page.evaluate(CONTRAST_JS) == [], view
        assert page.evaluate(NAMES_JS) == [], view
    # The views behind the questions and the picked files too.
    page.evaluate("location.hash = '#eligibility'")
    for question in ("in_image", "adult", "has_image", "intimate"):
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
    # The skip link is the first thing Tab reaches from the top.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"


# ---------------------------------------------------------------- static checks (no browser)

def translation_keys_used():
    html = (STATIC / "index.html").read_text("utf-8")
    keys = set(re.findall(r'data-i18n="([^"]+)"', html))
    for attrs in re.findall(r'data-i18n-attr="([^"]+)"', html):
        keys |= {pair.split(":")[1] for pair in attrs.split(";")}
    for script in STATIC.glob("*.js"):
        keys |= set(re.findall(r"\bt\('([\w.\-]+)'", script.read_text("utf-8")))
    # Keys built from a value: every value they can take.
    keys |= {f"not_eligible.reason.{q}" for q in ("in_image", "adult", "has_image", "intimate")}
    keys |= {f"files.error.{e}" for e in ("unreadable_image", "too_small", "unsupported", "failed")}
    keys |= {f"files.video.{e}" for e in ("video_unreadable", "video_failed", "video_timeout", "video_too_long",
                                          "video_too_large", "video_no_picture")}
    keys |= {f"status.state.{s}" for s in ("active", "withdrawn")}
    keys |= {f"verdict.{v}" for v in ("matched-pending-review", "removed", "not-violating", "disputed-false-match")}
    return keys


def test_translation_files_are_complete():
    french = json.loads((STATIC / "i18n" / "fr.json").read_text("utf-8"))
    english = json.loads((STATIC / "i18n" / "en.json").read_text("utf-8"))
    assert set(french) == set(english)
    missing = translation_keys_used() - set(french)
    assert not missing, f"keys used but not translated: {sorted(missing)}"
    def placeholders(value):
        if isinstance(value, dict):  # plural forms
            assert "other" in value and set(value) <= {"zero", "one", "two", "few", "many", "other"}
            return set().union(*(placeholders(form) for form in value.values()))
        if isinstance(value, list):  # the help links
            return set()
        assert isinstance(value, str) and value.strip()
        return set(re.findall(r"\{(\w+)\}", value))

    for key in french:
        assert placeholders(french[key]) == placeholders(english[key]), key
    for links in (french["help.links"], english["help.links"]):
        assert links and all(set(link) == {"name", "url", "text"} and link["url"].startswith("https://")
                             for link in links)
    # Text in the HTML comes from the translation files only (the <noscript> note excepted).
    html = (STATIC / "index.html").read_text("utf-8")
    html = re.sub(r"<noscript>.*?</noscript>|<!--.*?-->|<script.*?</script>|<title.*?</title>", "", html, flags=re.S)
    stray = [text.strip() for text in re.findall(r">([^<]+)<", html) if text.strip()]
    assert stray == []


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
