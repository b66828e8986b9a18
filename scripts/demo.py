"""The main job, end to end, with real processes on this machine (run it with scripts/demo).

A helpline node and a platform node start as two `ncii-node serve` processes on
loopback (free ports, a temporary directory). A person's photos are made here (with
PIL) and fingerprinted with `ncii-node hash`; the person opens a case over HTTP; the
platform receives the fingerprints by following the helpline's log, matches an
edited copy (blurred, resized, re-compressed) with `ncii-node match`, and publishes
`removed`; the helpline follows the platform's log and the case status shows the
verdict; the person withdraws; the platform stops matching; the case status says when
the platform applied the fingerprints and the withdrawal, and the withdrawal's receipt
verifies offline.

Every step checks its outcome. Exit status 0 only if every step happened; the node
processes are stopped whatever happens (including Ctrl-C).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELPLINE_ORIGIN = "helpline.demo.example/log"
PLATFORM_ORIGIN = "platform.demo.example/feedback"
TIMEOUT = 60.0

PROCESSES: list[subprocess.Popen] = []
WORK = Path()  # the temporary directory, made when the demo starts (not on import)
KEEP = os.environ.get("NCII_DEMO_KEEP") == "1"


# ---------------------------------------------------------------- narration

def say(text: str = "") -> None:
    print(textwrap.fill(text, width=96) if text else "", flush=True)


def step(number: int, title: str) -> None:
    print(f"\n=== {number}. {title}", flush=True)


def show(text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        print(f"    {line}", flush=True)


class DemoFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


# ---------------------------------------------------------------- processes

def ncii(*args: str, show_command: bool = True, input_text: str | None = None) -> str:
    """Run one `ncii-node` command; return its standard output (failure raises)."""
    if show_command:
        shown = " ".join(a if " " not in a else repr(a) for a in args).replace(str(WORK), "$DEMO")
        print(f"  $ ncii-node {shown}", flush=True)
    result = subprocess.run([sys.executable, "-m", "node", *args], cwd=REPO, env=_env(), text=True,
                            capture_output=True, input=input_text, timeout=300)
    if result.returncode != 0:
        raise DemoFailed(f"`ncii-node {args[0]}` failed (exit {result.returncode}): "
                         f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_node(datadir: Path, name: str) -> dict:
    log_file = open(WORK / f"{name}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "node", "serve", "--dir", str(datadir), "--port", "0"],
                               cwd=REPO, env=_env(), stdout=log_file, stderr=subprocess.STDOUT,
                               start_new_session=True)
    PROCESSES.append(process)
    info_path = datadir / "serve.json"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoFailed(f"the {name} node stopped at start-up:\n{(WORK / f'{name}.log').read_text()[-2000:]}")
        if info_path.exists():
            try:
                info = json.loads(info_path.read_text())
                if info.get("pid") == process.pid:
                    print(f"  {name} node: pid {process.pid}, {info['public_url']} "
                          f"(admin {info['admin_url']})", flush=True)
                    return info
            except ValueError:
                pass
        time.sleep(0.1)
    raise DemoFailed(f"the {name} node did not start within {TIMEOUT:.0f} s")


def stop_all() -> None:
    while PROCESSES:
        process = PROCESSES.pop()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _on_signal(signum, frame):
    stop_all()
    sys.exit(128 + signum)


# ---------------------------------------------------------------- HTTP and waiting

def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_for(what: str, probe, timeout: float = TIMEOUT):
    """Call probe() until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        value = probe()
        if value:
            print(f"  ({what}: after {time.monotonic() - started:.1f} s)", flush=True)
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(0.25)


# ---------------------------------------------------------------- photos

def make_photo(path: Path, seed: int) -> None:
    """A synthetic 'photo': a smooth gradient with shapes and a little noise (enough
    structure for a high-quality PDQ hash)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    width, height = 960, 720
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([
        128 + 90 * np.sin(x / rng.uniform(60, 160) + rng.uniform(0, 6)),
        128 + 90 * np.cos(y / rng.uniform(60, 160) + rng.uniform(0, 6)),
        128 + 90 * np.sin((x + y) / rng.uniform(80, 200)),
    ], axis=-1)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x0, y0 = rng.integers(0, width - 100), rng.integers(0, height - 100)
        x1, y1 = x0 + rng.integers(60, 400), y0 + rng.integers(60, 300)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    noise = rng.normal(0, 6, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1)).save(path, quality=92)


def edit_photo(source: Path, target: Path) -> None:
    """What a re-upload often looks like: blurred, halved, brighter with less contrast,
    re-compressed hard."""
    from PIL import Image, ImageEnhance, ImageFilter

    with Image.open(source) as image:
        edited = image.filter(ImageFilter.GaussianBlur(3))
        edited = edited.resize((image.width // 2, image.height // 2), Image.LANCZOS)
        edited = ImageEnhance.Contrast(ImageEnhance.Brightness(edited).enhance(1.15)).enhance(0.85)
        edited.save(target, quality=30)


# ---------------------------------------------------------------- the story

def platform_status() -> dict:
    return json.loads(ncii("status", "--dir", str(PLATFORM), "--json", show_command=False))


def match(path: Path) -> list[dict]:
    out = ncii("match", "--dir", str(PLATFORM), "--json", str(path), show_command=False)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    check(len(lines) == 1, f"`ncii-node match` printed {len(lines)} results for one file")
    return lines[0].get("matches", [])


def main() -> int:
    global HELPLINE, PLATFORM
    HELPLINE, PLATFORM = WORK / "helpline", WORK / "platform"
    say("ncii-node demo: a helpline and a platform, each running its own node; a person's images never "
        f"leave their device. Working directory: {WORK}")

    step(1, "Two nodes are created: a helpline and a platform")
    ncii("init", "--dir", str(HELPLINE), "--origin", HELPLINE_ORIGIN, "--role", "helpline")
    ncii("init", "--dir", str(PLATFORM), "--origin", PLATFORM_ORIGIN, "--role", "platform")
    say("Reading a log is a privilege (an abuser holding an image could look for its fingerprint), so "
        "each node registers the other's request key as a reader:")
    platform_request_key = ncii("key", "--dir", str(PLATFORM), "--request").strip()
    helpline_request_key = ncii("key", "--dir", str(HELPLINE), "--request").strip()
    ncii("readers", "add", "--dir", str(HELPLINE), platform_request_key, "--name", "platform")
    ncii("readers", "add", "--dir", str(PLATFORM), helpline_request_key, "--name", "helpline")

    step(2, "Both nodes start as separate processes on loopback")
    helpline = start_node(HELPLINE, "helpline")
    platform = start_node(PLATFORM, "platform")
    helpline_vkey = ncii("key", "--dir", str(HELPLINE)).strip()
    platform_vkey = ncii("key", "--dir", str(PLATFORM)).strip()
    say("The platform follows the helpline's log, and the helpline follows the platform's (for "
        "feedback); each pins the other's verifier key:")
    ncii("follow", "add", "--dir", str(PLATFORM), helpline["public_url"], "--vkey", helpline_vkey, "--name", "helpline")
    ncii("follow", "add", "--dir", str(HELPLINE), platform["public_url"], "--vkey", platform_vkey, "--name", "platform")

    step(3, "On the person's device: three photos are fingerprinted")
    photos = WORK / "device"
    photos.mkdir()
    originals = [photos / f"photo-{i}.jpg" for i in (1, 2, 3)]
    for seed, path in enumerate(originals, start=11):
        make_photo(path, seed)
    out = ncii("hash", "--json", *map(str, originals))
    fingerprints = [json.loads(line) for line in out.splitlines() if line.strip()]
    check(len(fingerprints) == 3, f"expected 3 fingerprints, got {len(fingerprints)}")
    for fp in fingerprints:
        show(f"{fp['signal']} {fp['fingerprint'][:24]}... quality {fp.get('quality')}")
    say("Only these fingerprints travel; the photos stay in the device folder.")

    step(4, "The person opens a case with the helpline (HTTP, JSON)")
    cases_url = helpline["public_url"] + "/v1/cases"
    yes = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}
    status, refusal = post_json(cases_url, {"eligibility": {**yes, "adult": False},
                                            "fingerprints": fingerprints, "lang": "en"})
    check(status == 422 and refusal.get("eligible") is False, f"an under-18 answer was not refused: {status}")
    say(f"First, someone answers 'under 18': no case is opened (HTTP {status}); they are pointed to "
        + ", ".join(f"{h['name']} <{h.get('url') or h.get('phone')}>" for h in refusal["help"]) + ".")
    status, refusal = post_json(cases_url, {"eligibility": {**yes, "adult_in_image": False},
                                            "fingerprints": fingerprints, "lang": "en", "country": "GB"})
    check(status == 422 and refusal["help"][0]["name"].startswith("Take It Down"),
          f"an image taken before 18 was not refused: {status}")
    say(f"An adult whose image was taken before 18 (in the United Kingdom) is refused too (HTTP {status}) "
        "and pointed to " + ", ".join(h["name"] for h in refusal["help"]) + ".")
    status, opened = post_json(cases_url, {"eligibility": yes, "fingerprints": fingerprints, "lang": "en"})
    check(status == 201, f"POST /v1/cases answered {status}: {opened}")
    case_number, pin = opened["case_number"], opened["pin"]
    published = {p["index"] for p in opened["published"]}
    say(f"Eligible: HTTP 201. The person writes down (shown once, never recoverable):")
    show(f"case number {case_number}    PIN {pin}")
    say(f"{opened['fingerprints']} submission entries were published in the helpline's log at indices "
        f"{sorted(published)}; the helpline stores only a keyed hash of the case number and an scrypt "
        "hash of the PIN.")

    step(5, "The platform receives the fingerprints by following the helpline's log")
    needed = max(published) + 1

    def received():
        for entry in platform_status().get("logs", []):
            if entry["origin"] == HELPLINE_ORIGIN and entry["size"] >= needed:
                return entry
        return None

    entry = wait_for("the platform verified the helpline's checkpoint, tiles and entries", received)
    show(f"platform follows {entry['origin']}: {entry['size']} entries verified, forked={entry['forked']}")

    step(6, "Someone uploads an edited copy to the platform; it matches")
    upload = WORK / "upload-edited.jpg"
    edit_photo(originals[0], upload)
    unrelated = WORK / "upload-unrelated.jpg"
    make_photo(unrelated, 999)
    say("The copy is blurred, shrunk to half size, brightened, and re-compressed at JPEG quality 30 "
        "(its bytes, and so its MD5, differ entirely from the original's):")
    print(f"  $ ncii-node match --dir $DEMO/platform --json {upload.name}", flush=True)
    matches = wait_for("the platform's match index holds the case's fingerprints", lambda: match(upload))
    hit = next((m for m in matches if m.get("origin") == HELPLINE_ORIGIN and m.get("index") in published), None)
    check(hit is not None, f"the edited copy did not match the case's entries: {matches}")
    show(f"MATCH: log {hit['origin']}, entry {hit['index']}, PDQ distance {hit['distance']}")
    check(not match(unrelated), "an unrelated photo matched")
    say("An unrelated photo does not match.")

    step(7, "The platform removes the upload and publishes its verdict in its own log")
    out = ncii("feedback", "--dir", str(PLATFORM), "--origin", HELPLINE_ORIGIN, "--index", str(hit["index"]),
               "--verdict", "removed")
    feedback = json.loads(out)
    show(f"feedback entry {feedback['index']} of {PLATFORM_ORIGIN}: {feedback['entry']['verdict']} "
         f"(quotes leaf hash {feedback['entry']['leaf_hash'][:16]}...)")

    step(8, "The person checks the case: the helpline followed the platform's log")
    status_url = helpline["public_url"] + "/v1/cases/status"

    def removed():
        status, answer = post_json(status_url, {"case_number": case_number, "pin": pin})
        check(status == 200, f"status answered {status}: {answer}")
        if any(f.get("verdict") == "removed" for f in answer.get("feedback", [])):
            return answer
        return None

    answer = wait_for("the verdict reached the case status", removed)
    show(f"state: {answer['state']}, {answer['fingerprints']} fingerprints, published at "
         + ", ".join(f"index {p['index']} (checkpoint {p['checkpoint_size']})" for p in answer["published"]))
    for item in answer["feedback"]:
        show(f"platform {item['platform']}: {item['verdict']} (entry {item['index']})")

    step(9, "The person withdraws the case")
    status, withdrawn = post_json(helpline["public_url"] + "/v1/cases/withdraw",
                                  {"case_number": case_number, "pin": pin})
    check(status == 200 and withdrawn.get("state") == "withdrawn", f"withdraw answered {status}: {withdrawn}")
    when = withdrawn["withdrawn_at"]
    check(when and when["published"], f"the withdrawal was not published: {when}")
    show(f"state: withdrawn; withdrawal entr{'y' if len(when['entries']) == 1 else 'ies'} {when['entries']} "
         f"published in checkpoint {when['checkpoint_size']} on {when['day']}")
    status, again = post_json(helpline["public_url"] + "/v1/cases/withdraw", {"case_number": case_number, "pin": pin})
    check(status == 200 and again["withdrawn_at"]["entries"] == when["entries"], "withdrawing twice appended more")
    say("Withdrawing again changes nothing (idempotent).")

    step(10, "The platform stops matching")
    print(f"  $ ncii-node match --dir $DEMO/platform --json {upload.name}", flush=True)
    wait_for("the platform applied the withdrawal and no longer matches", lambda: not match(upload))
    counts = platform_status().get("fingerprints", {})
    show(f"platform fingerprints: {json.dumps(counts)}")

    step(11, "The person sees when the platform applied the withdrawal, and keeps a receipt")

    def applied():
        status, answer = post_json(status_url, {"case_number": case_number, "pin": pin})
        check(status == 200, f"status answered {status}: {answer}")
        done = [p for p in answer.get("platforms", []) if (p.get("withdrawal") or {}).get("applied")]
        return done or None

    for platform in wait_for("the platform's acknowledgement of the withdrawal reached the status", applied):
        show(f"{platform['name']}: fingerprints applied at {platform['fingerprints']['at']}, "
             f"withdrawal applied at {platform['withdrawal']['at']} (its signed acknowledgements)")
    receipt = WORK / "receipt.tlog-proof"
    receipt.write_text(withdrawn["receipt"])
    with urllib.request.urlopen(helpline["public_url"] + "/v1/cases/receipt-policy", timeout=10) as response:
        (WORK / "receipt-policy.txt").write_bytes(response.read())
    check(case_number not in withdrawn["receipt"] and pin not in withdrawn["receipt"], "the receipt holds the codes")
    out = ncii("audit", "verify-proof", str(receipt), "--policy", str(WORK / "receipt-policy.txt"))
    check(out.startswith("VALID proof"), f"the receipt does not verify: {out}")
    for line in out.splitlines()[:1] + [line for line in out.splitlines() if line.startswith("Published")]:
        show(line)

    say()
    say("Every step happened. The person's photos never left the device folder; the logs hold only "
        "fingerprints, withdrawals, a verdict and the platform's acknowledgements -- no case number, no PIN, "
        "no address.")
    return 0


if __name__ == "__main__":
    WORK = Path(tempfile.mkdtemp(prefix="ncii-demo-"))
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    code = 1
    try:
        code = main()
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr, flush=True)
        for name in ("helpline", "platform"):
            path = WORK / f"{name}.log"
            if path.exists():
                tail = path.read_text().splitlines()[-15:]
                print(f"--- last lines of the {name} node's log:", file=sys.stderr)
                print("\n".join(tail), file=sys.stderr)
    finally:
        stop_all()
        if not KEEP:
            import shutil

            shutil.rmtree(WORK, ignore_errors=True)
        else:
            print(f"(kept {WORK})")
    sys.exit(code)
