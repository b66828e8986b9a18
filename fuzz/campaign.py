"""scripts/fuzz: run every harness (or those named) for a given time; report executions
and crashes.

    scripts/fuzz                          every harness, 60 s each
    scripts/fuzz --per 300 note entry     those two, 5 minutes each
    scripts/fuzz --total 1800             every harness, 30 minutes in all (shared evenly)
    scripts/fuzz --reproduce entry FILE   run one input through a harness, print what it raises

Each harness runs in its own process (fuzz/run_one.py: libFuzzer ends the process at
the first crash), niced, from its seeds (written afresh from fuzz/seeds.py) and the
corpus grown by earlier runs, both under --workdir (default .fuzz/, not committed).
After a crash the harness starts again for the time left, at most --max-crashes times;
each crashing input is kept as .fuzz/crashes/<harness>/crash-<sha1> (timeout-, oom- for
a hang or a memory blowup) with the exception it raised, for a regression test in
tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Crash:
    file: str
    kind: str            # crash, timeout, oom, leak
    exception: str       # the last line of the traceback, or libFuzzer's reason


@dataclass
class Outcome:
    harness: str
    seconds: float = 0.0
    executions: int = 0
    corpus: int = 0
    runs: int = 0
    slowest: int = 0     # seconds the slowest input took (libFuzzer's whole seconds)
    crashes: list[Crash] = field(default_factory=list)
    error: str | None = None

    @property
    def per_second(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


def _dictionary(tokens: tuple[bytes, ...], path: Path) -> Path | None:
    """A libFuzzer dictionary file: one quoted token a line, bytes escaped as \\xNN."""
    if not tokens:
        return None

    def quote(token: bytes) -> str:
        return "".join(chr(b) if 0x20 <= b < 0x7f and b not in b'"\\' else f"\\x{b:02x}" for b in token)

    path.write_text("".join(f'"{quote(t)}"\n' for t in tokens))
    return path


_EXECUTED = re.compile(r"^stat::number_of_executed_units: (\d+)", re.M)
_SLOWEST = re.compile(r"^stat::slowest_unit_time_sec: (\d+)", re.M)
_PROGRESS = re.compile(r"^#(\d+)\s", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def _executions(log: str) -> int:
    found = _EXECUTED.findall(log)
    if found:
        return int(found[-1])
    progress = _PROGRESS.findall(log)  # a crash may end the run before the final stats
    return int(progress[-1]) if progress else 0


def _exception(log: str) -> str:
    """The exception line of an atheris crash report (the line after its banner), or
    libFuzzer's reason."""
    if "Uncaught Python exception: ===" in log:
        tail = log.split("Uncaught Python exception: ===", 1)[1].strip()
        return tail.splitlines()[0][:300] if tail else "a Python exception"
    for reason in ("ALARM: working on the last Unit", "out-of-memory", "timeout", "deadly signal"):
        if reason in log:
            return reason
    return "unknown (see the log)"


def run_harness(name: str, seconds: float, workdir: Path, *, max_crashes: int, nice: int) -> Outcome:
    from fuzz.harnesses import HARNESSES
    from fuzz.seeds import write_seeds

    harness = HARNESSES[name]
    outcome = Outcome(name)
    corpus, seeds_dir, crash_dir = (workdir / part / name for part in ("corpus", "seeds", "crashes"))
    logs = workdir / "logs"
    for directory in (corpus, crash_dir, logs, workdir / "dicts"):
        directory.mkdir(parents=True, exist_ok=True)
    try:
        write_seeds(name, seeds_dir)
    except Exception as exc:  # a seed that cannot be made is reported, the campaign goes on
        outcome.error = f"seeds: {type(exc).__name__}: {exc}"
        return outcome
    dictionary = _dictionary(harness.tokens, workdir / "dicts" / f"{name}.dict")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    deadline = time.monotonic() + seconds
    log_path = logs / f"{name}.log"
    log_path.write_text("")
    while (left := deadline - time.monotonic()) >= 2 and len(outcome.crashes) < max_crashes:
        command = [sys.executable, "-m", "fuzz.run_one", name, f"-max_total_time={int(left)}",
                   f"-max_len={harness.max_len}", f"-timeout={harness.timeout}", "-rss_limit_mb=1536",
                   "-print_final_stats=1", f"-artifact_prefix={crash_dir}/", str(corpus), str(seeds_dir)]
        if dictionary:
            command.insert(4, f"-dict={dictionary}")
        started = time.monotonic()
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, errors="replace",
                              preexec_fn=(lambda: os.nice(nice)) if nice else None)
        outcome.seconds += time.monotonic() - started
        outcome.runs += 1
        log = proc.stdout + proc.stderr
        with log_path.open("a") as f:
            f.write(f"\n===== run {outcome.runs}: exit {proc.returncode} =====\n{log}")
        outcome.executions += _executions(log)
        outcome.slowest = max([outcome.slowest, *map(int, _SLOWEST.findall(log))])
        artifacts = _ARTIFACT.findall(log)
        if proc.returncode == 0:
            continue
        if not artifacts:
            outcome.error = f"exit status {proc.returncode} without a crash file (see {log_path})"
            break
        artifact = Path(artifacts[-1])
        # atheris writes the traceback to stdout, libFuzzer its report to stderr.
        (artifact.parent / (artifact.name + ".txt")).write_text(proc.stdout[-20000:] + "\n" + proc.stderr[-10000:])
        outcome.crashes.append(Crash(str(artifact.relative_to(REPO) if artifact.is_relative_to(REPO) else artifact),
                                     artifact.name.split("-", 1)[0], _exception(log)))
    outcome.corpus = sum(1 for _ in corpus.iterdir())
    return outcome


def reproduce(name: str, path: str) -> int:
    import logging

    from fuzz.harnesses import HARNESSES

    logging.disable(logging.CRITICAL)
    data = Path(path).read_bytes()
    started = time.monotonic()
    try:
        HARNESSES[name].run(data)
    except BaseException:
        traceback.print_exc()
        print(f"{name}: the input ({len(data)} bytes) crashes the harness", file=sys.stderr)
        return 1
    print(f"{name}: the input ({len(data)} bytes) is handled ({time.monotonic() - started:.3f} s)")
    return 0


def report(outcomes: list[Outcome], out=sys.stdout) -> None:
    print(f"{'harness':<18} {'seconds':>8} {'executions':>12} {'exec/s':>8} {'corpus':>7} {'slowest s':>9} "
          f"{'crashes':>8}", file=out)
    for o in outcomes:
        print(f"{o.harness:<18} {o.seconds:8.0f} {o.executions:12,d} {o.per_second:8,.0f} {o.corpus:7d} "
              f"{o.slowest:9d} {len(o.crashes):8d}" + (f"  ERROR {o.error}" if o.error else ""), file=out)
    total_s = sum(o.seconds for o in outcomes)
    total_x = sum(o.executions for o in outcomes)
    print(f"{'total':<18} {total_s:8.0f} {total_x:12,d} {total_x / total_s if total_s else 0:8,.0f} "
          f"{sum(o.corpus for o in outcomes):7d} {max([0, *(o.slowest for o in outcomes)]):9d} "
          f"{sum(len(o.crashes) for o in outcomes):8d}", file=out)
    for o in outcomes:
        for crash in o.crashes:
            print(f"{o.harness}: {crash.kind} {crash.file}\n    {crash.exception}", file=out)


def main(argv: list[str] | None = None) -> int:
    from fuzz.harnesses import HARNESSES

    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("harnesses", nargs="*", metavar="HARNESS", help=f"default: all ({', '.join(HARNESSES)})")
    parser.add_argument("--per", type=float, default=60, help="seconds per harness (default 60)")
    parser.add_argument("--total", type=float, help="seconds in all, shared evenly (caps --per)")
    parser.add_argument("--jobs", type=int, default=1, help="harnesses run at once (default 1)")
    parser.add_argument("--max-crashes", type=int, default=5, help="crashes kept per harness before it stops")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the fuzzing processes (default 10)")
    parser.add_argument("--workdir", type=Path, default=REPO / ".fuzz")
    parser.add_argument("--json", type=Path, help="also write the outcome as JSON to this file")
    parser.add_argument("--list", action="store_true", help="list the harnesses and what each parses")
    parser.add_argument("--reproduce", nargs=2, metavar=("HARNESS", "FILE"))
    args = parser.parse_args(argv)

    if args.list:
        for h in HARNESSES.values():
            print(f"{h.name:<18} {h.about}")
        return 0
    if args.reproduce:
        return reproduce(*args.reproduce)
    names = args.harnesses or list(HARNESSES)
    unknown = [n for n in names if n not in HARNESSES]
    if unknown:
        parser.error(f"unknown harness(es) {', '.join(unknown)}; see --list")
    per = args.per if args.total is None else min(args.per, args.total * args.jobs / len(names))
    print(f"fuzz: {len(names)} harness(es), {per:.0f} s each, {args.jobs} at a time; work in {args.workdir}",
          file=sys.stderr)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda n: run_harness(n, per, args.workdir, max_crashes=args.max_crashes,
                                                       nice=args.nice), names))
    report(outcomes)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(o), "per_second": o.per_second} for o in outcomes], indent=1))
    return 1 if any(o.crashes or o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
