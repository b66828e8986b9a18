"""Backing up a data directory while its node serves, and restoring it elsewhere.

`make_backup(datadir, out)` writes a directory that holds everything needed to bring
the node back:

  node.db        a copy made with SQLite's online backup API in ONE step: one read
                 transaction, so the copy is one consistent state of the database
                 even while the sequencer and the follower write (WAL lets them go on).
                 It may hold entries of a batch stored but not yet published; the
                 restored node publishes them when it starts, at the same indices, as
                 the original did (node/log/sequencer.py, crash recovery);
  tiles/         exactly the tiles and entry bundles of the copy's latest checkpoint,
                 and that checkpoint -- checked against its root (every tile, every
                 bundle) before the backup is called done. Tiles and bundles are
                 immutable once published, so copying them after the database is safe;
                 tiles of later checkpoints are left out: the copy knows no entry
                 beyond its checkpoint, and a tile it cannot derive would stop its
                 sequencer (node/store/tiles.py refuses to overwrite a tile);
  the rest       every other file of the data directory -- config.toml, keys, tokens,
                 fork evidence -- except what a running node makes for itself (lock,
                 serve.json, tmp/, the database's -wal and -shm files);
  backup.json    the manifest: origin, size and root of the checkpoint, and the
                 SHA-256 of every file, so that `restore` can refuse a damaged copy.

Paths that [paths] sends outside the data directory are copied to their default
places inside the backup, and its config.toml says so.

A backup holds the log's signing key, the request key, the admin token, the case
key and the PIN hashes: whoever holds it can sign as the log and test guessed PINs
offline. It is written with modes 0700/0600; keep it as you keep the node itself.

`restore(backup, target)` checks the manifest, copies everything into a new data
directory, opens the database (running migrations of a newer version) and checks that
its latest checkpoint is the manifest's. The restored log is at the backup's size: if
the original published beyond that, appending to the restored log would fork it (its
followers and witnesses hold the later checkpoints), and RestoreReport.warning says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from node.config import PathsSection, dump_config
from node.datadir import DataDir, fsync_dir
from node.figures import version
from node.store import StoreError, copy_database, open_db
from protocol.errors import ProtocolError
from protocol.tiles import TileId, bundles_for_size, decode_bundle, tiles_for_size, verify_bundle, verify_tiles

MANIFEST = "backup.json"
FORMAT = 1
#: Files a running node makes for itself: never backed up, never restored (nor DIR/serve.d).
RUNTIME_FILES = {"lock", "serve.json"}


class BackupError(RuntimeError):
    """The backup cannot be made or restored; the message says why."""


@dataclasses.dataclass
class BackupReport:
    path: Path
    origin: str
    size: int          # the latest checkpoint in the copy
    entries: int       # entries stored in the copy: beyond `size`, those of a batch being published
    root_hash: str
    files: int
    bytes: int
    seconds: float


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _new_directory(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} exists and is not an empty directory; choose a new one")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def _copy(src: Path, dst: Path, mode: int = 0o600) -> None:
    """Copy without syncing: `_sync_tree` makes everything durable at once (one fsync per
    file of a million-entry log's 8,000 files took most of a backup's time)."""
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with open(src, "rb") as source, os.fdopen(fd, "wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)


def _inside(path: Path, root: Path) -> Path | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def make_backup(datadir: DataDir, out: Path) -> BackupReport:
    """Back up `datadir` into the new directory `out` (see the module docstring)."""
    started = time.monotonic()
    config = datadir.config
    if datadir.uses_postgres:
        raise BackupError("this node keeps its store in PostgreSQL: back up the database with pg_dump "
                          "(tiles and cases are in it) and DIR's keys and configuration with it "
                          "(spec/parts/storage.md)")
    root = datadir.root
    out = Path(out).absolute()
    if _inside(out, root) is not None:
        raise BackupError(f"{out} is inside the data directory; write the backup elsewhere")
    _new_directory(out)
    # Items of [paths] that lie outside the data directory go to their default places.
    defaults = PathsSection()
    moved = {}
    for field in dataclasses.fields(PathsSection):
        if _inside(datadir._resolve(getattr(config.paths, field.name)), root) is None:
            moved[field.name] = getattr(defaults, field.name)
    layout = dataclasses.replace(config.paths, **moved)
    db_rel, tiles_rel = Path(layout.db), Path(layout.tiles)

    # 1. The database, in one step (one read transaction): a consistent state.
    db_out = out / db_rel
    db_out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(db_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        latest, stored = copy_database(datadir.db_path, db_out)
    except StoreError as exc:
        raise BackupError(f"cannot copy the database {datadir.db_path}: {exc}") from None
    size, root_hash, note = (latest.size, latest.root_hash, latest.note) if latest else (0, None, None)

    # 2. The tiles of that checkpoint, checked against its root.
    if size:
        _copy_tiles(datadir.tiles_dir, out / tiles_rel, size, root_hash)
        (out / tiles_rel / "checkpoint").write_bytes(note)
    else:
        (out / tiles_rel).mkdir(parents=True, exist_ok=True, mode=0o700)

    # 3. Every other file (keys, tokens, configuration, evidence), outside files included.
    skip = {datadir.db_path, Path(f"{datadir.db_path}-wal"), Path(f"{datadir.db_path}-shm"),
            Path(f"{datadir.db_path}-journal")}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d) not in (datadir.tiles_dir, datadir.tmp_dir,
                                                                  datadir.serving_dir)]
        for name in filenames:
            path = here / name
            rel = path.relative_to(root)
            if path in skip or (here == root and name in RUNTIME_FILES | {"config.toml"}):
                continue
            _copy(path, out / rel)
    for name, default in moved.items():
        if name not in ("db", "tiles"):
            _copy(datadir._resolve(getattr(config.paths, name)), out / default)
    config_out = dataclasses.replace(config, paths=layout)
    _write(out / "config.toml", dump_config(config_out).encode())

    files = _hash_tree(out)
    manifest = {"format": FORMAT, "origin": config.node.origin, "role": config.node.role, "size": size,
                "entries": stored,
                "root_hash": root_hash.hex() if root_hash else None, "created_at": time.time(),
                "version": _version(), "files": files}
    _write(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    _sync_tree(out)
    total = sum((out / rel).stat().st_size for rel in files)
    return BackupReport(out, config.node.origin, size, stored, manifest["root_hash"] or "", len(files), total,
                        time.monotonic() - started)


def _copy_tiles(tiles_dir: Path, out: Path, size: int, root_hash: bytes) -> None:
    tiles: dict = {}
    try:
        for tile in tiles_for_size(size):
            _copy(tiles_dir / tile.path(), out / tile.path(), 0o644)
            tiles[tile] = (out / tile.path()).read_bytes()
        verify_tiles(size, root_hash, tiles)
        for bundle in bundles_for_size(size):
            _copy(tiles_dir / bundle.path(), out / bundle.path(), 0o644)
            entries = decode_bundle((out / bundle.path()).read_bytes(), bundle.width)
            verify_bundle(entries, tiles[TileId(0, bundle.index, bundle.width)], bundle.width)
    except FileNotFoundError as exc:
        raise BackupError(f"a tile of the published checkpoint {size} is missing: {exc.filename}") from None
    except ProtocolError as exc:
        raise BackupError(f"the tiles on disk do not match checkpoint {size}: {exc}") from None


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _hash_tree(root: Path) -> dict[str, str]:
    files = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel != MANIFEST:
                files[rel] = _sha256(path)
    return dict(sorted(files.items()))


def _sync_tree(root: Path) -> None:
    """Make every file and directory written under `root` durable: one sync(2) of the
    file systems (the kernel writes back all dirty pages in one pass), then each
    directory fsynced, as POSIX asks for renames and creations."""
    os.sync()
    for dirpath, _, _ in os.walk(root):
        fsync_dir(Path(dirpath))


def _version() -> str:
    return version()


# -- restoring ---------------------------------------------------------------------------------

@dataclasses.dataclass
class RestoreReport:
    path: Path
    origin: str
    size: int
    entries: int
    backed_up_at: float
    warning: str


def read_manifest(backup: Path) -> dict:
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{backup} holds no {MANIFEST}: not a backup made by `ncii-node backup`") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {backup / MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise BackupError(f"{backup / MANIFEST} is not a backup manifest this version understands")
    return manifest


def check_backup(backup: Path) -> dict:
    """The manifest, once every file it lists is present, unchanged, and alone."""
    backup = Path(backup)
    manifest = read_manifest(backup)
    present = _hash_tree(backup)
    listed = manifest["files"]
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    changed = sorted(rel for rel in set(listed) & set(present) if listed[rel] != present[rel])
    problems = [f"{what}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                for what, names in (("missing", missing), ("changed", changed), ("not in the manifest", extra))
                if names]
    if problems:
        raise BackupError(f"the backup {backup} is damaged ({'; '.join(problems)}); restore another one")
    return manifest


def restore(backup: Path, target: Path) -> RestoreReport:
    backup = Path(backup).absolute()
    manifest = check_backup(backup)
    target = Path(target).absolute()
    _new_directory(target)
    for rel in manifest["files"]:
        mode = 0o644 if rel.startswith("tiles/") else 0o600
        _copy(backup / rel, target / rel, mode)
    datadir = DataDir(target)
    (datadir.tmp_dir).mkdir(exist_ok=True, mode=0o700)
    _sync_tree(target)
    db = open_db(datadir.db_path)  # migrations of a newer ncii-node run here
    try:
        latest = db.log.latest_checkpoint()
    finally:
        db.close()
    size = latest.size if latest else 0
    root_hash = latest.root_hash.hex() if latest else None
    if size != manifest["size"] or root_hash != manifest["root_hash"]:
        raise BackupError(f"the restored database ends at checkpoint {size}, the manifest says "
                          f"{manifest['size']}; the backup is inconsistent")
    warning = (f"The restored log is at size {manifest.get('entries', size)}, its state when the backup was made. If the original node "
               "published entries after that, its followers and witnesses hold checkpoints beyond this size, and "
               "anything appended now would FORK the log (they would keep the evidence). Before serving, compare "
               "with a follower (`ncii-node status` on it shows the size it verified of this log) or audit against "
               "one (`ncii-node audit URL --vkey VKEY --peer FOLLOWER_URL`).")
    return RestoreReport(target, manifest["origin"], size, manifest.get("entries", size), manifest["created_at"],
                         warning)
