"""`ncii-node hash`: fingerprints of photos and videos, computed on this device.

Output holds fingerprints only: no pixels, and no file names unless --show-paths.
Progress and failures go to stderr as "file 3 of 10: <reason>". Exit status: 0
every file hashed, 1 some could not be, 2 usage error (as argparse).
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2

CSV_COLUMNS = ["file", "signal", "fingerprint", "quality", "timestamp", "low_quality"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "hash",
        help="fingerprint photos and videos on this device (nothing else leaves it)",
        description="Computes PDQ fingerprints of photos (JPEG, PNG, WebP, GIF, BMP, TIFF, "
        "HEIC/HEIF) and MD5 + vPDQ fingerprints of videos (MP4, MOV, WebM, MKV, AVI). "
        "The output holds no pixels and, unless --show-paths, no file names, so it can be "
        "handed to a helpline. --json prints what the helpline's case form takes.",
        epilog="Exit status: 0 every file hashed, 1 some files could not be hashed, 2 usage error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="photo, video or (with --recursive) folder")
    p.add_argument("-r", "--recursive", action="store_true", help="hash the photos and videos inside folders")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON object per fingerprint and line")
    form.add_argument("--csv", action="store_true", help="CSV; a vPDQ fingerprint gives one row per frame")
    p.add_argument("--show-paths", action="store_true", help="name the files in output and messages")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar even when stderr is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    p.add_argument("-j", "--jobs", type=_positive_int, default=None, metavar="N",
                   help="worker processes (default: one per core)")
    p.add_argument("--vpdq-interval", type=_positive_float, default=1.0, metavar="SECONDS",
                   help="seconds between the video frames hashed for vPDQ (default 1)")
    p.set_defaults(func=run)


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def run(args) -> int:
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SOME_FAILED


def _run(args) -> int:
    from tqdm import tqdm

    from node.hashing.batch import NotAFileError, find_media, hash_many

    try:
        files = find_media(args.paths, args.recursive)
    except NotAFileError as exc:
        print(f"ncii-node hash: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not files:
        print("ncii-node hash: error: no photos or videos found there", file=sys.stderr)
        return EXIT_USAGE

    show_bar = args.progress if args.progress is not None else (len(files) > 1 and sys.stderr.isatty())
    out = _writer(args)
    if args.csv:
        print(",".join(CSV_COLUMNS + (["path"] if args.show_paths else [])))
    failed = low = 0
    with tqdm(total=len(files), file=sys.stderr, unit="file", desc="hashing", disable=not show_bar) as bar:
        def say(line: str, stream) -> None:
            if show_bar:
                bar.write(line, file=stream)  # clears and redraws the bar around the line
            else:
                print(line, file=stream)

        for outcome in hash_many(files, jobs=args.jobs, interval=args.vpdq_interval):
            name = str(outcome.path) if args.show_paths else f"file {outcome.number} of {outcome.total}"
            if outcome.error:
                failed += 1
                say(f"{name}: {outcome.error}", sys.stderr)
            for fingerprint in outcome.fingerprints:
                low += bool(fingerprint.get("low_quality"))
                for line in out(outcome, fingerprint, name):
                    say(line, sys.stdout)
            bar.update(1)
    if len(files) > 1 or failed:
        summary = f"hashed {len(files) - failed} of {len(files)} files"
        if failed:
            summary += f"; {failed} could not be hashed"
        print(summary, file=sys.stderr)
    if low:
        print(f"{low} fingerprint(s) have low quality (below 50): a platform may not find a copy "
              "with them", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _writer(args):
    """A function (outcome, fingerprint, name) -> output lines, for the chosen format."""
    import csv
    import io
    import json

    if args.json:
        def json_lines(outcome, fingerprint, name):
            if args.show_paths:
                fingerprint = {**fingerprint, "path": str(outcome.path)}
            yield json.dumps(fingerprint, separators=(",", ":"))

        return json_lines

    if args.csv:
        def csv_lines(outcome, fingerprint, name):
            rows = []
            tail = [str(outcome.path)] if args.show_paths else []
            low = "yes" if fingerprint.get("low_quality") else ""
            if fingerprint["signal"] == "vpdq":
                for frame in fingerprint["fingerprint"]:
                    rows.append([outcome.number, "vpdq", frame["pdq"], frame["quality"], frame["timestamp"], low, *tail])
            else:
                rows.append([outcome.number, fingerprint["signal"], fingerprint["fingerprint"],
                             fingerprint.get("quality", ""), "", low, *tail])
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(rows)
            yield buffer.getvalue().rstrip("\n")

        return csv_lines

    def text_lines(outcome, fingerprint, name):
        signal = fingerprint["signal"]
        if signal == "vpdq":
            frames = fingerprint["fingerprint"]
            good = sum(1 for f in frames if f["quality"] >= 50)
            text = f"vpdq  {len(frames)} distinct frames, {good} of quality 50 or more (use --json for the hashes)"
        else:
            text = f"{signal:<4}  {fingerprint['fingerprint']}"
            if "quality" in fingerprint:
                text += f"  quality {fingerprint['quality']}"
                if fingerprint.get("low_quality"):
                    text += " (low)"
        yield f"{name}: {text}"

    return text_lines
