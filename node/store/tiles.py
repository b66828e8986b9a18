"""Tile storage: the published log's tiles and entry bundles (files on disk today).

Contract of TileStore, which the sequencer's crash argument rests on
(node/log/sequencer.py), and which a tile store in a database must keep too:
- A tile, once stored under its C2SP path, never changes: storing it again with the
  same bytes is a no-op, with other bytes TileConflict (nothing changed).
- `stage(files)` prepares a batch where nobody reads it, and may run while the
  batch's entries are being committed; `commit(staged)` makes it readable. The
  sequencer commits only after the entries are durable, and records the checkpoint
  only after `commit` returned: every tile a reader can get was derived from durable
  entries, and the tiles of a published checkpoint are all there.
- `read(path)` / `get(tile)` return the whole tile or nothing, never a part.
- `write_checkpoint(note)` keeps a copy of the latest checkpoint beside the tiles, so
  that a static web server can serve the directory; the database's record stays the
  authority.

On disk: a file is written to DIR/tmp under a unique name, fsynced, then renamed to its C2SP
path under the tiles directory; the directories whose entries changed are fsynced
after the renames. So a reader (or a crash) sees either no file or the whole file,
never a prefix.

A tile path that already exists is not rewritten: it is compared. After a crash the
sequencer re-publishes entries that were stored but not yet covered by a checkpoint;
the tiles it derives from them must be byte-identical to any written before the
crash (they are a function of the stored entries only). A difference would mean the
database and the tiles disagree: we stop with TileConflict rather than change a
file a client may have fetched.

Paths handed to this module come from protocol.tiles (TileId.path(), entries_path()),
never from a request, so nothing here has to defend against path traversal; the
HTTP layer parses request paths strictly before asking for a file.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import shutil
from pathlib import Path

from node.datadir import fsync_dir, write_atomic


class TileConflict(RuntimeError):
    """A tile file exists with different bytes than the log now derives for it."""


class TileWriteError(RuntimeError):
    """The tiles directory cannot be written (permissions, full disk, not a directory)."""


class TileReadError(RuntimeError):
    """A tile could not be read (the database went away mid-read, a disk error): nothing
    of it is returned, and nothing of it is kept."""


class TileStore:
    def __init__(self, root: Path, tmp_dir: Path):
        self.root = Path(root)
        self.tmp_dir = Path(tmp_dir)

    @classmethod
    def of(cls, datadir):
        """The tile store of a data directory (DIR/tiles, temporary files in DIR/tmp), or
        the database's (node/store/dbtiles.py) when the node's database is PostgreSQL."""
        from node.store import is_postgres

        if is_postgres(datadir.db_path):
            from node.store.dbtiles import DatabaseTileStore

            return DatabaseTileStore(datadir.db_path)
        return cls(datadir.tiles_dir, datadir.tmp_dir)

    def prepare(self) -> None:
        """Create the directories and remove temporary files a crash left behind."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if self.tmp_dir.exists():
                shutil.rmtree(self.tmp_dir)
            self.tmp_dir.mkdir(parents=True)
        except OSError as exc:
            raise TileWriteError(f"cannot prepare the tiles directory {self.root}: {_reason(exc)}") from None

    def read(self, relative: str) -> bytes | None:
        try:
            with open(self.root / relative, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def read_published(self, ident, size: int) -> bytes | None:
        """A tile or bundle (protocol.tiles.TileId / BundleId) of the published tree of
        `size` leaves, for the HTTP route (node/web/log_routes.py), which checked that the
        tree has it. Files are read on the event loop: the page cache answers in
        microseconds. Raises TileReadError."""
        try:
            return self.read(ident.path())
        except OSError as exc:
            raise TileReadError(f"cannot read {ident.path()}: {_reason(exc)}") from None

    def get(self, tile, default=None):
        """Mapping-like view by protocol.tiles.TileId (what TileNodes reads)."""
        data = self.read(tile.path())
        return default if data is None else data

    def write_checkpoint(self, note: bytes) -> None:
        """Atomic, not synced: a copy, rewritten from the database at every start."""
        write_atomic(self.root / "checkpoint", note, tmp_dir=self.tmp_dir, sync_dir=False, sync_file=False)

    def write_all(self, files: list[tuple[str, bytes]]) -> int:
        """Durably write every (relative path, bytes); returns how many were new.
        Raises TileWriteError or TileConflict. Same as `stage` then `commit`."""
        staged = self.stage(files)
        self.commit(staged)
        return len(staged.pending)

    def stage(self, files: list[tuple[str, bytes]]) -> "Staged":
        """Write every file that does not exist yet to a temporary file in tmp/ and
        fsync it; nothing appears under the tiles directory yet. Files that exist are
        compared instead (TileConflict if they differ).

        Staging may run while the batch's entries are being committed to the database:
        a staged file is invisible (and discarded on start-up) until `commit` renames it,
        and `commit` runs only after the entries are durable.

        The fsyncs run in parallel threads: the file system commits them together (one
        journal commit instead of one per file), which is most of the cost of a batch."""
        staged = Staged()
        fds: list[int] = []
        try:
            try:
                for relative, data in files:
                    final = self.root / relative
                    existing = self.read(relative)
                    if existing is not None:
                        if existing != data:
                            raise TileConflict(
                                f"{final} exists with different content than the log derives for it now; "
                                "the tiles directory does not belong to this database. Stopping without "
                                "changing it.")
                        continue
                    tmp = self.tmp_dir / f"{secrets.token_hex(8)}.tmp"
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    fds.append(fd)
                    staged.pending.append((tmp, final))
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                list(_fsync_pool().map(os.fsync, fds))
            finally:
                for fd in fds:
                    os.close(fd)
        except OSError as exc:
            self.discard(staged)
            raise TileWriteError(f"cannot write tiles under {self.root}: {_reason(exc)}") from None
        except BaseException:
            self.discard(staged)
            raise
        return staged

    def commit(self, staged: "Staged") -> None:
        """Rename the staged files into place and make the renames durable (fsync of
        every directory whose listing changed). After a failure some files may be in
        place and others not; each one present is complete."""
        dirs_to_sync: set[Path] = set()
        try:
            for tmp, final in staged.pending:
                dirs_to_sync.update(_makedirs(final.parent, self.root))
                os.replace(tmp, final)
                dirs_to_sync.add(final.parent)
            list(_fsync_pool().map(fsync_dir, dirs_to_sync))
        except OSError as exc:
            self.discard(staged)
            raise TileWriteError(f"cannot write tiles under {self.root}: {_reason(exc)}") from None

    def discard(self, staged: "Staged") -> None:
        for tmp, _ in staged.pending:
            try:
                tmp.unlink()
            except OSError:
                pass

    def items(self):
        """Every stored (path, bytes) but the checkpoint copy, in path order."""
        for dirpath, dirnames, names in os.walk(self.root):
            dirnames.sort()
            for name in sorted(names):
                path = Path(dirpath) / name
                relative = path.relative_to(self.root).as_posix()
                if relative != "checkpoint":
                    yield relative, path.read_bytes()

    def close(self) -> None:
        """Nothing to release (files); a database tile store closes its connections."""


class Staged:
    """Files written and fsynced under tmp/, waiting to be renamed into place."""

    def __init__(self):
        self.pending: list[tuple[Path, Path]] = []   # (temporary file, final path)


_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _fsync_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="fsync")
    return _POOL


def _makedirs(directory: Path, root: Path) -> list[Path]:
    """mkdir -p; returns the parents whose listing changed (to fsync them)."""
    if directory.is_dir():
        return []
    changed = _makedirs(directory.parent, root) if directory.parent != root else []
    try:
        directory.mkdir()
    except FileExistsError:
        if not directory.is_dir():
            raise
    changed.append(directory.parent)
    return changed


def _reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
