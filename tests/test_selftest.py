"""`ncii-node selftest` runs as a real process and reports every family it can find."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"


def run_selftest(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node", "selftest", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def test_selftest_passes_every_vector():
    result = run_selftest("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    families = {f["name"]: f for f in json.loads(result.stdout.rsplit("\n", 2)[0])}
    assert families["entry vectors (spec/vectors)"]["passed"] >= 90
    if CONFORMANCE.exists():
        # every shared family ran, none was skipped, and each checked something
        for name, family in families.items():
            assert family["skipped"] is None, name
            assert family["passed"] > 0 and not family["failed"], name
        assert families["RFC 6962 / 9162 proofs"]["passed"] == len(list((CONFORMANCE / "merkle").rglob("*.json"))) - 1
    assert result.stdout.strip().endswith("0 failed")


def test_selftest_reports_a_broken_vector(tmp_path, monkeypatch):
    # A selftest that cannot fail proves nothing: corrupt one vector and expect a failure.
    import node.selftest as selftest

    vectors = tmp_path / "vectors"
    vectors.mkdir()
    good = json.loads((selftest.VECTORS / "entries.json").read_text())
    good[0]["hex"] = good[0]["hex"][:-2] + ("00" if good[0]["hex"][-2:] != "00" else "01")
    (vectors / "entries.json").write_text(json.dumps(good))
    (vectors / "entries-invalid.json").write_text((selftest.VECTORS / "entries-invalid.json").read_text())
    monkeypatch.setattr(selftest, "VECTORS", vectors)
    monkeypatch.setattr(selftest, "FAMILIES", [f for f in selftest.FAMILIES if f[0].startswith("entry")])
    results = selftest.run_all()
    assert results[0].failed, "a corrupted vector must be reported"


def test_a_reader_that_leaves_early_is_not_an_error():
    # `ncii-node selftest | head -1`: no traceback, exit status 0
    proc = subprocess.Popen([sys.executable, "-m", "node", "selftest"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before it prints anything: every write then fails with EPIPE
    _, err = proc.communicate(timeout=300)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert proc.returncode in (0, 1)  # its own verdict; never a crash
