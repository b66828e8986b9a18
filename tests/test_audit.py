"""`ncii-node audit` over real HTTP: crafted logs (built and signed with protocol/)
served by a test server on 127.0.0.1, and a real restricted publishing node. The audit
must pass a clean log and catch a tampered tile, a rewritten entry, a withdrawal that
points forward, a bad key rotation, feedback quoting a wrong leaf hash, and a log that
rewrote history since the last audit (with evidence anyone can check)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

from node.audit.run import AuditOptions, run_audit
from node.witness.evidence import verify_evidence
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.entries import Announcement, Feedback, Submission, Withdrawal, encode_entry, rotation_message
from protocol.merkle import leaf_hash, root_of
from protocol.note import Signer, sign_note
from protocol.tiles import TileId, build_tile, bundles_for_size, encode_bundle, tiles_for_size

ORIGIN = "crafted.example/log"
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers

def submission(i: int, signal: str = "pdq", day: int = 19_700) -> bytes:
    size = 32 if signal == "pdq" else 16
    fingerprint = (i + 1).to_bytes(4, "big") * (size // 4)
    return encode_entry(Submission(signal, fingerprint, 90 if signal == "pdq" else None, (), day + i % 5))


def build_log(signer: Signer, entries: list[bytes], origin: str | None = None) -> dict[str, bytes]:
    """Every file of a C2SP tlog-tiles log holding `entries`, checkpoint signed by `signer`
    (for `origin`, default the key's name: C2SP lets a log name its key otherwise)."""
    leaves = [leaf_hash(e) for e in entries]
    n = len(entries)

    def node_at(level: int, index: int) -> bytes:
        return root_of(leaves[index << level:(index + 1) << level])

    files = {t.path(): build_tile(t.level, t.index, n, node_at) for t in tiles_for_size(n)}
    for b in bundles_for_size(n):
        files[b.path()] = encode_bundle(entries[b.index * 256:b.index * 256 + b.width])
    cp = Checkpoint(origin or signer.name, n, root_of(leaves))
    files["checkpoint"] = sign_checkpoint(cp, signer) if origin is None else sign_note(cp.to_text(), [signer])
    return files


class LogServer:
    """Serves named histories: GET /<name>/<path>. `histories[name]` may be replaced
    at any time (a log that changes its story)."""

    def __init__(self):
        self.histories: dict[str, dict[str, bytes]] = {}
        self.extra: dict[str, bytes] = {}    # other paths, e.g. "witness/seen"
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        name, _, path = request.match_info["rest"].partition("/")
        data = self.histories.get(name, {}).get(path)
        if data is None:
            data = self.extra.get(request.match_info["rest"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    async def start(self, aiohttp_server):
        app = web.Application()
        app.router.add_get("/{rest:.+}", self.handle)
        server = await aiohttp_server(app, host="127.0.0.1")
        self.url = str(server.make_url("")).rstrip("/")
        return self


@pytest.fixture
async def log_server(aiohttp_server):
    return await LogServer().start(aiohttp_server)


@pytest.fixture
def signer():
    return Signer.generate(ORIGIN)


async def cli(*args: str) -> tuple[int, str, str]:
    """Run the real `ncii-node` in a subprocess (the test's event loop keeps serving)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "node", *args, cwd=REPO,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def mixed_entries(signer: Signer, n: int = 600) -> list[bytes]:
    """Submissions of two signal types, withdrawals of earlier ones, feedback on this log
    (with the right leaf hash) and on another, an announcement."""
    entries = [submission(i, "pdq" if i % 3 else "md5") for i in range(n)]
    entries[300] = encode_entry(Withdrawal((3, 4, 10)))
    entries[301] = encode_entry(Withdrawal((20,), "duplicate"))
    entries[310] = encode_entry(Feedback(ORIGIN, 5, leaf_hash(entries[5]), "removed"))
    entries[311] = encode_entry(Feedback("other.example/log", 7, bytes(32), "not-violating"))
    entries[320] = encode_entry(Announcement("Crafted Helpline", "https://crafted.example/contact",
                                             "https://crafted.example/policy"))
    return entries


# ------------------------------------------------------------------------------- tests

async def test_clean_log_passes_with_report_and_chart(log_server, signer, tmp_path):
    log_server.histories["log"] = build_log(signer, mixed_entries(signer))
    state = tmp_path / "state"
    code, out, err = await cli("audit", f"{log_server.url}/log", "--vkey", signer.verifier_key(),
                               "--json", "--state", str(state))
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["ok"] and report["size"] == 600 and report["violations"] == []
    kinds = report["counts"]["by_kind"]
    assert kinds == {"announcement": 1, "feedback": 2, "submission": 595, "withdrawal": 2}
    assert sum(report["counts"]["by_signal"].values()) == 595 and set(report["counts"]["by_signal"]) == {"pdq", "md5"}
    assert report["withdrawn_submissions"] == 4
    assert report["withdrawal_rate"] == pytest.approx(4 / 595, abs=1e-6)
    assert report["counts"]["feedback_about_other_logs"] == {"other.example/log": 1}
    assert len(report["submissions_per_day"]) == 5
    page = Path(report["html_report"]).read_text()
    assert "<svg" in page and "<rect" in page
    # Self-contained: no script, no link, no external URL besides the SVG namespace.
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert page.replace("http://www.w3.org/2000/svg", "").count("http") == page.count(log_server.url)
    assert (state / "seen.json").exists()

    # Text output, second run: consistent with the state.
    code, out, _ = await cli("audit", f"{log_server.url}/log", "--vkey", signer.verifier_key(), "--state", str(state))
    assert code == 0 and "since the last audit: consistent" in out and "OK, no violation" in out


async def test_tampered_tile_is_caught(log_server, signer, tmp_path):
    files = build_log(signer, mixed_entries(signer))
    path = TileId(0, 1).path()
    files[path] = files[path][:100] + bytes([files[path][100] ^ 1]) + files[path][101:]
    log_server.histories["log"] = files
    code, out, _ = await cli("audit", f"{log_server.url}/log", "--vkey", signer.verifier_key(), "--json",
                             "--html", str(tmp_path / "r.html"))
    assert code == 1
    report = json.loads(out)
    assert [v["kind"] for v in report["violations"]] == ["tiles"]


async def test_rewritten_entry_is_caught(log_server, signer, tmp_path):
    entries = mixed_entries(signer)
    files = build_log(signer, entries)
    rewritten = list(entries)
    rewritten[42] = submission(9999)           # same length, another fingerprint
    files[bundles_for_size(600)[0].path()] = encode_bundle(rewritten[:256])
    log_server.histories["log"] = files
    outcome = await run_audit(AuditOptions(f"{log_server.url}/log", signer.verifier_key(),
                                           html_path=tmp_path / "r.html"))
    assert not outcome.result.ok
    assert [(v.kind, v.index) for v in outcome.result.violations] == [("bundle", 42)]


async def test_withdrawal_pointing_forward_is_caught(log_server, signer, tmp_path):
    entries = [submission(i) for i in range(20)]
    entries[5] = encode_entry(Withdrawal((2, 12)))     # 12 is later than 5
    entries[6] = encode_entry(Withdrawal((6,)))        # itself
    log_server.histories["log"] = build_log(signer, entries)
    code, out, _ = await cli("audit", f"{log_server.url}/log", "--vkey", signer.verifier_key(), "--json",
                             "--html", str(tmp_path / "r.html"))
    assert code == 1
    report = json.loads(out)
    assert [(v["kind"], v["index"]) for v in report["violations"]] == [("withdrawal", 5), ("withdrawal", 6)]
    assert report["withdrawn_submissions"] == 1       # only target 2 counts


async def test_feedback_with_wrong_leaf_hash_and_forward_index(log_server, signer, tmp_path):
    entries = [submission(i) for i in range(10)]
    entries[4] = encode_entry(Feedback(ORIGIN, 1, leaf_hash(entries[2]), "removed"))
    entries[5] = encode_entry(Feedback(ORIGIN, 8, leaf_hash(entries[8]), "removed"))
    log_server.histories["log"] = build_log(signer, entries)
    outcome = await run_audit(AuditOptions(f"{log_server.url}/log", signer.verifier_key(),
                                           html_path=tmp_path / "r.html"))
    assert [(v.kind, v.index) for v in outcome.result.violations] == [("feedback", 4), ("feedback", 5)]


async def test_key_rotation_must_be_signed_by_current_key(log_server, signer, tmp_path):
    new = Signer.generate(ORIGIN)
    good = Announcement("H", "https://h.example/c", "https://h.example/p", new.verifier_key(),
                        signer.sign(rotation_message(new.verifier_key())))
    entries = [submission(i) for i in range(5)] + [encode_entry(good)] + [submission(i) for i in range(5, 8)]
    # After a valid rotation the new key signs the checkpoint: accepted.
    log_server.histories["good"] = build_log(new, entries)
    outcome = await run_audit(AuditOptions(f"{log_server.url}/good", signer.verifier_key(),
                                           html_path=tmp_path / "r.html"))
    assert outcome.result.ok, outcome.result.violations
    assert outcome.result.signed_by == new.verifier_key()
    # A rotation signed by some other key is a violation, and the new key is not trusted.
    rogue = Signer.generate(ORIGIN)
    bad = Announcement("H", "https://h.example/c", "https://h.example/p", new.verifier_key(),
                       rogue.sign(rotation_message(new.verifier_key())))
    entries[5] = encode_entry(bad)
    log_server.histories["bad"] = build_log(new, entries)
    outcome = await run_audit(AuditOptions(f"{log_server.url}/bad", signer.verifier_key(),
                                           html_path=tmp_path / "r.html"))
    assert [v.kind for v in outcome.result.violations] == ["rotation", "signature"]


async def test_wrong_key_and_unreachable(log_server, signer, tmp_path):
    log_server.histories["log"] = build_log(signer, [submission(i) for i in range(3)])
    other = Signer.generate(ORIGIN)
    code, out, _ = await cli("audit", f"{log_server.url}/log", "--vkey", other.verifier_key(), "--json",
                             "--html", str(tmp_path / "r.html"))
    assert code == 1 and [v["kind"] for v in json.loads(out)["violations"]] == ["signature"]
    code, out, _ = await cli("audit", f"{log_server.url}/log", "--vkey", other.verifier_key(),
                             "--html", str(tmp_path / "r.html"))
    assert code == 1 and "nothing below is authenticated" in out
    code, _, err = await cli("audit", f"{log_server.url}/nothing", "--vkey", signer.verifier_key(),
                             "--html", str(tmp_path / "r.html"))
    assert code == 2 and "cannot fetch the checkpoint" in err
    # A missing bundle is a violation (the log does not serve what it committed to).
    del log_server.histories["log"][bundles_for_size(3)[0].path()]
    code, out, _ = await cli("audit", f"{log_server.url}/log", "--vkey", signer.verifier_key(), "--json",
                             "--html", str(tmp_path / "r.html"))
    assert code == 1 and "unavailable" in [v["kind"] for v in json.loads(out)["violations"]]


async def test_history_rewritten_since_last_audit_gives_evidence(log_server, signer, tmp_path):
    state = tmp_path / "state"
    honest = [submission(i) for i in range(400)]
    log_server.histories["log"] = build_log(signer, honest[:300])
    args = ("audit", f"{log_server.url}/log", "--vkey", signer.verifier_key(), "--json", "--state", str(state))
    assert (await cli(*args))[0] == 0
    log_server.histories["log"] = build_log(signer, honest)                 # grows: fine
    code, out, _ = await cli(*args)
    assert code == 0 and json.loads(out)["consistency"]["status"] == "consistent"
    forked = honest[:100] + [submission(i, "md5") for i in range(100, 450)]  # rewrites 100..399
    log_server.histories["log"] = build_log(signer, forked)
    code, out, _ = await cli(*args)
    assert code == 1
    report = json.loads(out)
    assert [v["kind"] for v in report["violations"]] == ["consistency"]
    [evidence_file] = report["evidence_files"]
    code, out, _ = await cli("audit", "verify-evidence", evidence_file)
    assert code == 0 and "VALID evidence" in out
    assert verify_evidence(Path(evidence_file).read_bytes()).kind == "consistency"
    # The state still holds the checkpoint verified before the rewrite.
    saved = json.loads(next(p for p in state.glob("crafted*.json")).read_text())
    assert Checkpoint.parse(saved["note"].split("\n\n")[0] + "\n").size == 400
    # Tampered evidence proves nothing.
    doc = json.loads(Path(evidence_file).read_text())
    doc["proof"]["old_root_in_new_tree"] = doc["proof"]["hashes"][0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, out, _ = await cli("audit", "verify-evidence", str(bad))
    assert code == 1 and "NOT evidence" in out
    # A log that shrinks is a violation too.
    log_server.histories["log"] = build_log(signer, honest[:350])
    code, out, _ = await cli(*args)
    assert code == 1 and json.loads(out)["consistency"]["status"] == "inconsistent"


async def test_audit_of_a_restricted_real_node(tmp_path):
    """A real publishing node whose tiles only registered readers may fetch."""
    import aiohttp

    from node.web.app import RunningNode
    from publish_support import append, make_datadir, pdq_line

    publisher = make_datadir(tmp_path, public_read=False, name="publisher")
    auditor = make_datadir(tmp_path, name="auditor", origin="auditor.example/node")
    from node.cli import main as cli_main

    assert cli_main(["readers", "add", "--dir", str(publisher.root),
                     auditor.load_request_signer().verifier_key()]) == 0
    node = await RunningNode(publisher).start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            status, _ = await append(session, node.admin_url, publisher.admin_token(),
                                     [pdq_line(i) for i in range(300)])
            assert status == 200
            status, _ = await append(session, node.admin_url, publisher.admin_token(),
                                     ['{"kind": "withdrawal", "targets": [1, 2]}'])
            assert status == 200
        vkey = publisher.load_log_signer().verifier_key()
        code, out, err = await cli("audit", node.public_url, "--vkey", vkey, "--json", "--html", str(tmp_path / "r.html"))
        # not allowed to read is "could not audit" (2), not a violation by the log, and says what to do
        assert code == 2 and "--request-key FILE" in err, (out, err)
        code, out, err = await cli("audit", node.public_url, "--vkey", vkey, "--json", "--html", str(tmp_path / "r.html"),
                                   "--request-key", str(auditor.request_key_path))
        assert code == 0, (out, err)
        report = json.loads(out)
        assert report["size"] == 301 and report["withdrawn_submissions"] == 2
    finally:
        await node.stop()
