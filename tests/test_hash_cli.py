"""Tests of `ncii-node hash` and node/hashing/batch: output formats, privacy of file
names, progress, exit status, directory walks, the process pool and crash isolation."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from node.cli import main
from node.hashing import batch, hash_file
from protocol.signals import SIGNALS

ROOT = Path(__file__).resolve().parents[1]


def photo(path: Path, seed: int, size=(120, 90)) -> Path:
    """A small textured photo, different for every seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def video(path: Path) -> Path:
    import av

    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            rng = np.random.default_rng(i // 5)
            coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
            pixels = np.asarray(Image.fromarray(coarse).resize((64, 48), Image.Resampling.BICUBIC))
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


@pytest.fixture
def media(tmp_path):
    """Three files in a folder with a secret-looking name: a photo, a video, a broken file."""
    folder = tmp_path / "private-name-of-person"
    folder.mkdir()
    files = [
        photo(folder / "a-photo.jpg", 1),
        video(folder / "b-video.mp4"),
        folder / "c-broken.png",
    ]
    files[2].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return files


def run_cli(capsys, *args) -> tuple[int, str, str]:
    status = main(["hash", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_json_lines_are_what_the_case_api_takes(media, capsys):
    status, out, err = run_cli(capsys, "--json", *media)
    assert status == 1  # the broken file
    lines = [json.loads(line) for line in out.splitlines()]
    assert [f["signal"] for f in lines] == ["pdq", "md5", "vpdq"]
    for fingerprint in lines:
        signal = SIGNALS[fingerprint["signal"]]
        signal.parse_json(fingerprint["fingerprint"])  # valid value of its signal
        signal.check_quality(fingerprint.get("quality"))
        assert set(fingerprint) <= {"signal", "fingerprint", "quality", "low_quality"}
    assert lines[:1] + lines[1:] == hash_file(media[0]) + hash_file(media[1])
    assert "file 3 of 3: " in err and "damaged" in err


def test_no_file_names_unless_asked(media, capsys):
    for form in ([], ["--json"], ["--csv"]):
        status, out, err = run_cli(capsys, *form, *media)
        for text in (out, err):
            assert "private-name-of-person" not in text and "photo" not in text and "broken" not in text
    status, out, err = run_cli(capsys, "--json", "--show-paths", *media)
    paths = [json.loads(line)["path"] for line in out.splitlines()]
    assert paths == [str(media[0]), str(media[1]), str(media[1])]
    assert f"{media[2]}: " in err


def test_text_output_for_people(media, capsys):
    status, out, err = run_cli(capsys, *media)
    lines = out.splitlines()
    assert lines[0].startswith("file 1 of 3: pdq ") and "quality" in lines[0]
    assert lines[1].startswith("file 2 of 3: md5 ")
    assert lines[2].startswith("file 2 of 3: vpdq ") and "distinct frames" in lines[2]
    assert "hashed 2 of 3 files; 1 could not be hashed" in err


def test_csv_has_one_row_per_frame(media, capsys):
    status, out, err = run_cli(capsys, "--csv", *media[:2])
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["file", "signal", "fingerprint", "quality", "timestamp", "low_quality"]
    assert [r["signal"] for r in rows] == ["pdq", "md5", "vpdq", "vpdq"]
    assert [r["file"] for r in rows] == ["1", "2", "2", "2"]
    assert [r["timestamp"] for r in rows[2:]] == ["0.0", "1.0"]


def test_exit_status(media, tmp_path, capsys):
    assert run_cli(capsys, media[0])[0] == 0
    assert run_cli(capsys, media[0], tmp_path / "missing.jpg")[0] == 1
    status, out, err = run_cli(capsys, media[0].parent)
    assert status == 2 and "--recursive" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    status, out, err = run_cli(capsys, "-r", empty)
    assert status == 2 and "no photos or videos" in err
    for bad in (["--json", "--csv"], ["--jobs", "0"], ["--vpdq-interval", "-1"], []):
        with pytest.raises(SystemExit) as exit_:
            main(["hash", *bad, str(media[0])] if bad else ["hash"])
        assert exit_.value.code == 2


def test_recursive_walk(tmp_path, capsys):
    photo(tmp_path / "one.JPG", 1)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    photo(tmp_path / "sub" / "deeper" / "two.png", 2)
    photo(tmp_path / "sub" / "._two.png", 3)  # macOS resource fork: not a photo
    (tmp_path / "sub" / "notes.txt").write_text("not a photo")
    (tmp_path / ".hidden").mkdir()
    photo(tmp_path / ".hidden" / "three.png", 4)
    found = batch.find_media([tmp_path], recursive=True)
    assert found == [tmp_path / "one.JPG", tmp_path / "sub" / "deeper" / "two.png"]
    status, out, err = run_cli(capsys, "-r", "--json", tmp_path)
    assert status == 0 and len(out.splitlines()) == 2


def test_progress_bar_only_when_forced_or_on_a_terminal(media, capsys):
    status, out, err = run_cli(capsys, "--progress", *media[:2])
    assert "hashing" in err and "2/2" in err
    status, out, err = run_cli(capsys, *media[:2])  # stderr is not a terminal here
    assert "hashing" not in err and "2/2" not in err
    status, out, err = run_cli(capsys, "--progress", "--json", *media[:2])
    assert all(json.loads(line) for line in out.splitlines())  # the bar never mixes into stdout


def test_pool_gives_the_same_results_in_the_same_order(tmp_path):
    files = [photo(tmp_path / f"{i}.png", i) for i in range(6)]
    files.insert(3, tmp_path / "missing.png")
    one = list(batch.hash_many(files, jobs=1))
    two = list(batch.hash_many(files, jobs=2))
    assert [(o.number, o.path, o.fingerprints, o.error) for o in one] == [
        (o.number, o.path, o.fingerprints, o.error) for o in two
    ]
    assert [o.error for o in two] == [None] * 3 + ["no such file"] + [None] * 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers inherit the patch through fork")
def test_a_crashing_decoder_is_pinned_on_its_file(tmp_path, monkeypatch):
    files = [photo(tmp_path / f"{i}.png", i) for i in range(5)]
    real = batch.hash_file

    def crash_on_two(path, interval):
        if Path(path).name == "2.png":
            os._exit(70)  # what a segfaulting decoder looks like from outside
        return real(path, interval)

    monkeypatch.setattr(batch, "hash_file", crash_on_two)
    outcomes = list(batch.hash_many(files, jobs=2))
    assert [o.number for o in outcomes] == [1, 2, 3, 4, 5]
    assert [bool(o.fingerprints) for o in outcomes] == [True, True, False, True, True]
    assert "crashed" in outcomes[2].error


def test_unexpected_errors_do_not_leak_the_path(tmp_path, monkeypatch):
    def broken(path, interval):
        raise RuntimeError(f"internal failure reading {path}")

    monkeypatch.setattr(batch, "hash_file", broken)
    fingerprints, error = batch.hash_one(tmp_path / "secret.jpg")
    assert fingerprints == [] and "secret" not in error and "RuntimeError" in error


def test_command_line_entry_point(media):
    """The installed way of running it: `python -m node hash`, exit status included."""
    result = subprocess.run(
        [sys.executable, "-m", "node", "hash", "--json", str(media[0]), str(media[2])],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["signal"] == "pdq"
    assert result.stderr.startswith("file 2 of 2: ")
