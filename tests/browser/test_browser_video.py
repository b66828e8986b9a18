"""vPDQ of videos computed by the web page in a real browser (Debian chromium).

The page decodes frames with an off-screen <video> (video-frames.js) and hashes
them with its PDQ port in the worker. Checked here against `node.hashing`
(PyAV + pdqhash) on the same file:
- each conformance video (H.264 MP4): the browser's vPDQ and node.hashing's match
  each other under protocol.signals' VPDQ rule, both ways; frame counts and the
  largest frame distance at equal timestamps are printed;
- a VP9 WebM made here at 29.97 frames/s (no frame falls on a whole second, so the
  "first frame at or after each second" rule is exercised): same frames, same
  timestamps, every frame within distance 10;
- a file this browser cannot decode still gives its MD5, with the reason;
- how long a 20 s 720p video takes in the browser (printed).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

pytest.importorskip("av")
pytest.importorskip("pdqhash")

from webapp_support import CONFORMANCE, distance, make_video  # noqa: E402

# Runs inside the page: hash each URL as a video with the page's own code.
HASH_VIDEOS_JS = """
async (urls) => {
  const { Hasher, fingerprintsOf } = await import('/hashing.js');
  const hasher = new Hasher();
  const out = [];
  for (const url of urls) {
    const blob = await (await fetch(url)).blob();
    const name = url.split('/').pop();
    const started = performance.now();
    const progress = [];
    try {
      const r = await hasher.hash(new File([blob], name, { type: blob.type }), { kind: 'video', onProgress: (p) => progress.push(p) });
      if (r.thumbnail) r.thumbnail.close();
      out.push({ md5: r.fingerprint, vpdq: r.vpdq, error: r.vpdqError, detail: r.detail, complete: r.vpdqComplete, sampled: r.sampled,
                 seeks: r.seeks, duration: r.duration, stages: r.stages, pageMs: performance.now() - started,
                 fingerprints: fingerprintsOf(r).map((f) => f.signal),
                 progress: [progress.length, Math.min(...progress), progress[progress.length - 1]] });
    } catch (e) {
      out.push({ failed: e.code || String(e) });
    }
  }
  hasher.terminate();
  return out;
}
"""


@pytest.fixture
def page(open_page):
    page, _ = open_page(locale="en-US", path="/?lang=en")
    return page


def browser_vpdq(page, recorder, paths: list[Path], content_type: str) -> list[dict]:
    urls = []
    for path in paths:
        route = f"__test__/video/{path.name}"
        recorder.extra_routes[route] = (path.read_bytes(), content_type)
        urls.append("/" + route)
    return page.evaluate(HASH_VIDEOS_JS, urls)


def python_vpdq(path: Path) -> tuple[str, list[dict]]:
    from node.hashing.videos import hash_video_file

    md5, vpdq = hash_video_file(path)
    return md5["fingerprint"], vpdq["fingerprint"]


def compare(browser: list[dict], python: list[dict]) -> dict:
    """Frame counts, timestamps in common, largest distance at equal timestamps, VPDQ matches."""
    from protocol.signals import VPDQ

    ours, theirs = VPDQ.parse_json(browser), VPDQ.parse_json(python)
    by_time = {round(f["timestamp"] * 1000): f for f in python}
    paired = [(f, by_time[round(f["timestamp"] * 1000)]) for f in browser if round(f["timestamp"] * 1000) in by_time]
    return {
        "frames": (len(browser), len(python)),
        "paired": len(paired),
        "largest": max((distance(a["pdq"], b["pdq"]) for a, b in paired), default=None),
        "qualities": max((abs(a["quality"] - b["quality"]) for a, b in paired), default=None),
        "match": VPDQ.matches(ours, theirs) and VPDQ.matches(theirs, ours),
        "coverage": VPDQ.compare(ours, theirs),
    }


@pytest.fixture(scope="module")
def tiny_h264(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("h264") / "probe.mp4", codec="libx264", width=64, height=64,
                      seconds=1, rate=10, options={"preset": "ultrafast"})


@pytest.fixture
def h264(page, recorder, tiny_h264):
    """Skip unless this chromium decodes H.264 (Debian's does; builds without the
    proprietary codecs do not)."""
    can = page.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.42E01E\"')")
    [result] = browser_vpdq(page, recorder, [tiny_h264], "video/mp4")
    if not result.get("vpdq"):
        pytest.skip(f"this chromium cannot decode H.264 (canPlayType says {can!r}; decoding a 1 s clip "
                    f"gave {result.get('error') or result.get('failed')!r})")


def test_conformance_videos_match_node_hashing(page, recorder, h264):
    folder = CONFORMANCE / "video"
    videos = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
    if not videos:
        pytest.skip(f"no conformance videos in {folder}")
    results = browser_vpdq(page, recorder, videos, "video/mp4")
    print()
    for path, result in zip(videos, results):
        assert "failed" not in result, (path.name, result)
        md5, frames = python_vpdq(path)
        assert result["md5"] == md5 == hashlib.md5(path.read_bytes()).hexdigest()
        assert result["error"] is None and result["complete"], (path.name, result["error"])
        assert result["fingerprints"] == ["md5", "vpdq"]
        found = compare(result["vpdq"], frames)
        print(f"  {path.name}: browser {found['frames'][0]} frames, node.hashing {found['frames'][1]}; "
              f"{found['paired']} at the same timestamp, largest distance {found['largest']}, "
              f"largest quality gap {found['qualities']}; coverage {found['coverage']}; "
              f"{result['seeks']} seeks, {result['pageMs'] / 1000:.1f} s")
        assert found["match"], (path.name, found)
        assert found["paired"] >= 0.9 * max(found["frames"]), (path.name, found)


def test_vp9_webm_gives_node_hashings_frames(page, recorder, tmp_path):
    # 29.97 frames/s: the frame for second k is the first one after it (k * 1.001 s).
    path = make_video(tmp_path / "made-here.webm", codec="libvpx-vp9", width=320, height=240, seconds=6,
                      rate="30000/1001", options={"deadline": "realtime", "cpu-used": "8"})
    [result] = browser_vpdq(page, recorder, [path], "video/webm")
    assert "failed" not in result and result["vpdq"], result
    md5, frames = python_vpdq(path)
    assert result["md5"] == md5
    found = compare(result["vpdq"], frames)
    print(f"\n  VP9 WebM 320x240, 6 s at 29.97/s: browser {found['frames'][0]} frames, node.hashing "
          f"{found['frames'][1]}; largest distance at the same timestamp {found['largest']}; "
          f"timestamps {[f['timestamp'] for f in result['vpdq']]}")
    assert [f["timestamp"] for f in result["vpdq"]] == [f["timestamp"] for f in frames]
    assert found["largest"] <= 10 and found["match"]
    count, lowest, last = result["progress"]
    assert count >= len(frames) and 0 <= lowest and last == 1


def test_undecodable_video_still_gives_its_md5(page, recorder, tmp_path):
    import numpy as np

    path = tmp_path / "not-really.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(3).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    [result] = browser_vpdq(page, recorder, [path], "video/mp4")
    assert result["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert result["vpdq"] is None and result["error"] == "video_unreadable"
    assert result["fingerprints"] == ["md5"]


def test_seconds_to_hash_a_20_second_720p_video(page, recorder, tmp_path):
    can_h264 = page.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.64001f\"')")
    if can_h264:
        path = make_video(tmp_path / "720p.mp4", codec="libx264", width=1280, height=720, seconds=20, rate=30,
                          options={"preset": "ultrafast"}, bt709=True)
        kind, content_type = "H.264 MP4", "video/mp4"
    else:
        path = make_video(tmp_path / "720p.webm", codec="libvpx", width=1280, height=720, seconds=20, rate=30,
                          options={"deadline": "realtime", "cpu-used": "16"}, bt709=True)
        kind, content_type = "VP8 WebM", "video/webm"
    [result] = browser_vpdq(page, recorder, [path], content_type)
    assert result.get("vpdq"), result
    started = time.perf_counter()
    md5, frames = python_vpdq(path)
    python_seconds = time.perf_counter() - started
    found = compare(result["vpdq"], frames)
    stages = {name: round(ms / 1000, 2) for name, ms in result["stages"].items()}
    print(f"\n  20 s 720p {kind} ({path.stat().st_size / 1e6:.1f} MB): {result['pageMs'] / 1000:.1f} s in the browser "
          f"(stages in s: {stages}; {result['sampled']} frames, {result['seeks']} seeks); node.hashing "
          f"{python_seconds:.1f} s; largest frame distance {found['largest']}")
    assert found["match"] and found["frames"][0] == found["frames"][1] == 20
    assert result["pageMs"] < 60_000

    # The same video with its colours untagged: browsers take untagged HD as BT.709
    # (as players show it), FFmpeg/PyAV as BT.601; the gap is measured, not asserted.
    untagged = make_video(tmp_path / f"untagged{path.suffix}", codec="libx264" if can_h264 else "libvpx", width=1280,
                          height=720, seconds=5, rate=30,
                          options={"preset": "ultrafast"} if can_h264 else {"deadline": "realtime", "cpu-used": "16"})
    [result] = browser_vpdq(page, recorder, [untagged], content_type)
    gap = compare(result["vpdq"], python_vpdq(untagged)[1])
    print(f"  the first 5 s untagged (no colour matrix given): largest frame distance {gap['largest']}, "
          f"vPDQ match {gap['match']} ({gap['coverage']})")


def test_node_csp_lets_the_page_read_videos():
    import re

    from webapp_support import MEDIA_SOURCE, STATIC

    from node.web.static_routes import SECURITY_HEADERS

    meta = re.search(r'Content-Security-Policy" content="([^"]+)"', (STATIC / "index.html").read_text("utf-8")).group(1)
    header = SECURITY_HEADERS["Content-Security-Policy"]
    assert MEDIA_SOURCE in meta and MEDIA_SOURCE in header
    # The header the node sends says everything the page's own meta tag says (and more:
    # frame-ancestors, which only a header can say).
    directives = lambda csp: {d.strip() for d in csp.split(";") if d.strip()}  # noqa: E731
    assert directives(meta) <= directives(header)


def test_video_states_on_the_page(open_page, artifacts, tmp_path):
    """Progress while a video is read, the result, and the kind message (French and
    English) when this browser cannot decode one; screenshots in test-artifacts/browser/."""
    import json
    import time

    import numpy as np
    from test_webapp import PHONE
    from webapp_support import shoot, wait_until

    page, _ = open_page(locale="fr-FR", viewport=PHONE)
    page.click("#start")
    for question in ("in_image", "adult", "adult_in_image", "has_image", "intimate"):
        page.check(f"input[name={question}][value=yes]")
    page.click("#eligibility-continue")
    page.wait_for_selector("#view-files:not([hidden])")

    clips = [make_video(tmp_path / f"clip-{n}.webm", codec="libvpx-vp9", width=320, height=240, seconds=12, rate=25,
                        options={"deadline": "realtime", "cpu-used": "8"}) for n in (1, 2)]
    broken = tmp_path / "souvenir.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(9).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    page.set_input_files("#file-input", [str(clip) for clip in clips] + [str(broken)])

    # While reading: a bar and a live state line per video.
    deadline = time.monotonic() + 20
    while not page.evaluate("[...document.querySelectorAll('.file-item[data-kind=video] progress')]"
                            ".some((bar) => !bar.hidden && bar.value > 10)"):
        assert time.monotonic() < deadline, "no video was seen in progress"
        time.sleep(0.03)
    shoot(page, artifacts, "20-video-lecture-en-cours")
    line = page.locator(".file-item[data-kind=video] .file-state").first
    assert line.get_attribute("role") == "status" and line.get_attribute("aria-live") == "polite"
    assert page.locator(".file-item[data-kind=video] progress").first.get_attribute("aria-label").startswith("Avancement")

    wait_until(page, "document.querySelectorAll('.file-item[data-status=done]').length === 3", timeout=40)
    states = page.eval_on_selector_all(".file-item[data-kind=video] .file-state", "ls => ls.map(l => l.textContent)")
    assert all("copie exacte, et 12 images de la vidéo" in state for state in states[:2]), states
    assert "Ce navigateur ne sait pas lire cette vidéo." in states[2] and "Seule l'empreinte de la copie exacte" in states[2]
    assert "autre navigateur" in states[2]
    assert page.locator(".file-item[data-kind=video] canvas.thumb").count() == 2  # first frames, on this device only
    assert page.is_visible(".file-item:nth-child(3) .file-state.is-low")
    assert "5 empreintes prêtes" in page.inner_text("#progress")
    page.click(".payload summary")
    shown = json.loads(page.text_content("#payload-preview"))
    assert [f["signal"] for f in shown["fingerprints"]] == ["md5", "vpdq", "md5", "vpdq", "md5"]
    # One line per vPDQ frame in the preview.
    assert page.text_content("#payload-preview").count('{"pdq":') == 24
    shoot(page, artifacts, "21-video-illisible-et-apercu")

    page.click("#language-menu summary")
    page.click("#language-list button[data-lang=en]")
    page.wait_for_selector("html[lang=en]", state="attached")
    states = page.eval_on_selector_all(".file-item[data-kind=video] .file-state", "ls => ls.map(l => l.textContent)")
    assert "This browser cannot play this video." in states[2] and "Only the exact-copy fingerprint" in states[2]
    assert "12 pictures from the video" in states[0]
    shoot(page, artifacts, "22-video-unreadable-en")
    assert not page.errors, page.errors


def make_gapped_webm(path: Path, times: list[float]) -> Path:
    """A VP9 WebM whose frames start at the given times (seconds): irregular frame times."""
    from fractions import Fraction

    import av

    from webapp_support import synthetic_frames

    pictures = synthetic_frames(160, 120, len(times) / 25, 25, seed=11)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libvpx-vp9", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        stream.codec_context.time_base = Fraction(1, 1000)
        for when, pixels in zip(times, pictures):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = round(when * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_irregular_frame_times_follow_node_hashings_rule(page, recorder, tmp_path):
    # 25 frames/s for 2 s, nothing until 5.5 s, then 25 frames/s again: the frame at
    # 5.5 s stands for slot 2 (the first frame at or after it), the next slot is 6.
    times = [i / 25 for i in range(50)] + [5.5 + i / 25 for i in range(50)]
    path = make_gapped_webm(tmp_path / "gapped.webm", times)
    [result] = browser_vpdq(page, recorder, [path], "video/webm")
    assert result.get("vpdq"), result
    _, frames = python_vpdq(path)
    found = compare(result["vpdq"], frames)
    print(f"\n  irregular frame times: browser {[f['timestamp'] for f in result['vpdq']]}, node.hashing "
          f"{[f['timestamp'] for f in frames]}; largest distance {found['largest']}")
    assert [f["timestamp"] for f in result["vpdq"]] == [f["timestamp"] for f in frames]
    assert found["largest"] <= 10


def test_video_too_long_for_the_browser_gets_its_md5_only(page, recorder, tmp_path):
    from webapp_support import MAX_VPDQ_FRAMES_JS

    # Two frames 1,800 s apart: a tiny file that lasts more than MAX_VPDQ_FRAMES seconds.
    path = make_gapped_webm(tmp_path / "long.webm", [0.0, MAX_VPDQ_FRAMES_JS + 30.0])
    [result] = browser_vpdq(page, recorder, [path], "video/webm")
    assert result["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert result["vpdq"] is None and result["error"] == "video_too_long", result
    assert result["duration"] is None and result["fingerprints"] == ["md5"]


def test_page_limits_are_the_nodes():
    """video-frames.js repeats a few constants of protocol/ and node/hashing (it cannot import them)."""
    from webapp_support import STATIC, js_constant

    from node.hashing.images import HASH_SIZE
    from node.hashing.videos import DEFAULT_INTERVAL, MAX_FRAME_PIXELS
    from protocol.signals import MAX_VPDQ_FRAMES

    source = (STATIC / "video-frames.js").read_text("utf-8")
    assert js_constant(source, "MAX_VPDQ_FRAMES") == MAX_VPDQ_FRAMES
    assert js_constant(source, "SAMPLE_INTERVAL") == DEFAULT_INTERVAL
    assert js_constant(source, "HASH_SIZE") == HASH_SIZE
    assert js_constant(source, "MAX_FRAME_PIXELS") == MAX_FRAME_PIXELS
