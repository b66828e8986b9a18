"""Many files at once: find them, hash them on every core, report each in order.

`find_media(paths, recursive)` lists the files a run covers; `hash_many(files)`
yields one `Outcome` per file, in the order of the list, whatever order the
workers finish in, so output is reproducible and "file 3 of 10" means the same
file every time. A file that fails never stops the run; a decoder that crashes
its worker process is reported against the file that crashed it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from .errors import HashingError
from .media import MEDIA_SUFFIXES, hash_file
from .videos import DEFAULT_INTERVAL


class NotAFileError(Exception):
    """A command-line path that names no file we could hash (a usage mistake)."""


@dataclass(frozen=True)
class Outcome:
    """The result for the `number`-th file (from 1) of `total`: its fingerprints, or
    the reason it has none."""

    number: int
    total: int
    path: Path
    fingerprints: list[dict]
    error: str | None = None


def find_media(paths: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """The files a run covers, in a stable order. A file named explicitly is taken
    whatever its name (and reported if it is no photo or video); a directory needs
    `recursive` and contributes its photo and video files by suffix, sorted, without
    hidden files or macOS "._" resource forks. A missing path is kept, so that it is
    reported as a failed file."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            found.append(path)
            continue
        if not recursive:
            raise NotAFileError(f"{path} is a directory; add --recursive to hash the photos and videos in it")
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(names):
                if name.startswith(".") or Path(name).suffix.lower() not in MEDIA_SUFFIXES:
                    continue
                found.append(Path(folder, name))
    return found


def hash_one(path: str | os.PathLike, interval: float = DEFAULT_INTERVAL) -> tuple[list[dict], str | None]:
    """Fingerprints of one file, or its failure reason: never raises for a bad file,
    so one bad file in a worker cannot stop the others."""
    try:
        return hash_file(path, interval), None
    except HashingError as exc:
        return [], str(exc)
    except MemoryError:
        return [], "not enough memory to decode this file"
    except Exception as exc:  # a decoder bug; its message may hold the path, so not shown
        return [], f"could not be decoded (unexpected {type(exc).__name__})"


def default_jobs() -> int:
    """Worker processes to use: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def hash_many(
    files: list[Path], *, jobs: int | None = None, interval: float = DEFAULT_INTERVAL
) -> Iterator[Outcome]:
    """One Outcome per file of `files`, in order, hashed by `jobs` processes."""
    total = len(files)
    jobs = min(jobs or default_jobs(), total)
    if jobs <= 1:
        for number, path in enumerate(files, 1):
            yield Outcome(number, total, path, *hash_one(path, interval))
        return
    _import_decoders()
    done = 0
    pool = _pool(jobs)
    try:
        futures: list[Future] = [pool.submit(hash_one, str(path), interval) for path in files]
        for number, (path, future) in enumerate(zip(files, futures), 1):
            yield Outcome(number, total, path, *future.result())
            done = number
    except BrokenProcessPool:
        pass  # a worker died (a decoder crashed): find the culprit below
    finally:
        # Also reached when the caller stops early (Ctrl-C): drop the queued files.
        pool.shutdown(wait=True, cancel_futures=True)
    # Every file not yet reported is hashed again, one per fresh process, so the file
    # that crashes a decoder is named and the others still get their fingerprints.
    for number, path in enumerate(files[done:], done + 1):
        with _pool(1) as pool:
            try:
                result = pool.submit(hash_one, str(path), interval).result()
            except BrokenProcessPool:
                result = ([], "the decoder crashed on this file (it is probably damaged)")
        yield Outcome(number, total, path, *result)


def _import_decoders() -> None:
    """Import the decoders once here, so forked workers start with them loaded."""
    import av  # noqa: F401
    import pdqhash  # noqa: F401
    from PIL import Image

    Image.init()


def _pool(workers: int) -> ProcessPoolExecutor:
    # On Linux, fork starts workers in milliseconds with numpy, Pillow and PyAV
    # already imported; spawn re-imports them in every worker.
    # Elsewhere (macOS, Windows) fork is unsafe or absent.
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)
