"""The node's data directory (DIR) and how files in it are written.

Layout (paths under [paths] in the config can move the starred ones)::

    DIR/config.toml          the configuration (node/config.py)                (0600)
    DIR/keys/log.key *       Ed25519 key that signs checkpoints          (mode 0600)
    DIR/keys/request.key *   Ed25519 key that signs read requests to other nodes (0600)
    DIR/keys/ack.key         C2SP cosigner key of this node's acknowledgements   (0600)
    DIR/admin.token *        bearer token of the admin endpoint          (0600)
    DIR/match.token          bearer token of the match API only (platform nodes; 0600)
    DIR/metrics.token        bearer token of GET /metrics only (Prometheus; 0600)
    DIR/node.db *            SQLite database (WAL: also node.db-wal, node.db-shm) (0600)
    DIR/tiles/ *             the published log, laid out as C2SP tlog-tiles paths
    DIR/tmp/                 temporary files, renamed into tiles/ when complete
    DIR/lock                 flock'ed by the one process that writes the log
    DIR/serve.json           written by a running `serve`: its public and admin URLs (the
                             process started last)
    DIR/serve.d/PID.json     the same, one file per live `serve` process (a PostgreSQL node
                             may run several on one DIR), flock'ed by it while it lives

Invariant kept here: secret files are created with mode 0600 from the start (never
chmod'ed after being written), and every file that must survive a crash is written
to a temporary name, fsynced, renamed over its final name, and its directory fsynced.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
from pathlib import Path

from node.config import Config, ConfigError, dump_config, load_config
from protocol.cosignature import CosignatureSigner
from protocol.errors import KeyFormatError
from protocol.note import Signer


ACK_KEY_FILE = "keys/ack.key"
#: DIR/serve.d: one file per live `serve` process.
SERVING_DIR = "serve.d"


class DataDirError(RuntimeError):
    """The data directory is missing, locked by another process, or unusable."""


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, tmp_dir: Path | None = None,
                 sync_dir: bool = True, sync_file: bool = True) -> None:
    """Write `data` so that `path` holds either its old content or all of `data`,
    never a prefix, even across a crash or power loss (with `sync_file=False`, only
    across a crash of the process: for copies that are rewritten at start-up)."""
    path = Path(path)
    tmp_dir = Path(tmp_dir) if tmp_dir is not None else path.parent
    tmp = tmp_dir / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if sync_file:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


class DataDir:
    """Paths of one data directory, resolved against its configuration."""

    def __init__(self, root: Path | str, config: Config | None = None):
        self.root = Path(root).absolute()
        self._config = config
        self._lock_fd: int | None = None

    # -- configuration -------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def config(self) -> Config:
        if self._config is None:
            if not self.root.is_dir():
                raise DataDirError(f"{self.root} is not a data directory; create one with "
                                   "`ncii-node init --dir DIR --origin ORIGIN`")
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise DataDirError(str(exc)) from None
        return self._config

    def save_config(self, config: Config) -> None:
        config.validate()
        write_atomic(self.config_path, dump_config(config).encode(), mode=0o600)
        self._config = config

    def _resolve(self, relative: str) -> Path:
        return (self.root / relative).absolute()

    # -- paths -------------------------------------------------------------------------
    @property
    def db_path(self) -> Path | str:
        """Where the node's database is: the SQLite file, or with [database] url the
        PostgreSQL URL (a node.store.pg.PgTarget carrying the password apart)."""
        database = self.config.database
        if not database.url:
            return self._resolve(self.config.paths.db)
        from node.store.pg import PgTarget

        return PgTarget(database.url, self._database_password())

    @property
    def uses_postgres(self) -> bool:
        return bool(self.config.database.url)

    def _database_password(self) -> str | None:
        database = self.config.database
        if database.password_env:
            password = os.environ.get(database.password_env)
            if password is None:
                raise DataDirError(f"[database] password_env names {database.password_env}, which is not set")
            return password
        if database.password_file:
            try:
                return self._resolve(database.password_file).read_text("utf-8").strip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataDirError(f"cannot read the database password file "
                                   f"{self._resolve(database.password_file)}: {exc}") from None
        return None

    @property
    def tiles_dir(self) -> Path:
        return self._resolve(self.config.paths.tiles)

    @property
    def log_key_path(self) -> Path:
        return self._resolve(self.config.paths.log_key)

    @property
    def request_key_path(self) -> Path:
        return self._resolve(self.config.paths.request_key)

    @property
    def ack_key_path(self) -> Path:
        return self.root / ACK_KEY_FILE

    @property
    def admin_token_path(self) -> Path:
        return self._resolve(self.config.paths.admin_token)

    @property
    def match_token_path(self) -> Path:
        return self.root / "match.token"

    @property
    def metrics_token_path(self) -> Path:
        return self.root / "metrics.token"

    @property
    def tmp_dir(self) -> Path:
        # Beside tiles/ on the same file system, so that rename(2) is atomic.
        return self.tiles_dir.parent / "tmp"

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    @property
    def serve_info_path(self) -> Path:
        return self.root / "serve.json"

    @property
    def serving_dir(self) -> Path:
        return self.root / SERVING_DIR

    # -- secrets -------------------------------------------------------------------------
    def write_secret(self, path: Path, data: bytes) -> None:
        """Create a secret file with mode 0600; refuse to overwrite an existing one."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)

    def read_secret(self, path: Path) -> bytes:
        try:
            info = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataDirError(f"missing {path}; was the data directory created with `ncii-node init`?") from None
        except OSError as exc:
            raise DataDirError(f"cannot read {path}: {exc.strerror}") from None
        if info.st_mode & 0o077:
            raise DataDirError(f"{path} is readable by other users (mode {info.st_mode & 0o777:o}); "
                               f"run `chmod 600 {path}`")
        return data

    def load_log_signer(self):
        return self._load_signer(self.log_key_path)

    def load_request_signer(self):
        """The request key (node.readaccess.RequestKey): its `verifier_key()` is the
        request vkey that other nodes register, `signer()` signs read requests."""
        from node.readaccess import RequestKey

        key = self._load_signer(self.request_key_path)
        return RequestKey(key.name, key.seed)

    def load_ack_signer(self, *, create: bool = False):
        """The acknowledgement key (C2SP cosigner key, named like the origin; spec/parts/
        acknowledgements.md), made first if missing and `create` (a data directory older
        than acknowledgements)."""
        if create and not self.ack_key_path.exists():
            signer = CosignatureSigner.generate(self.config.node.origin)
            self.write_secret(self.ack_key_path, signer.to_key_file())
            return signer
        try:
            return CosignatureSigner.from_key_file(self.read_secret(self.ack_key_path))
        except KeyFormatError as exc:
            raise DataDirError(f"{self.ack_key_path}: {exc}") from None

    def _load_signer(self, path: Path):
        try:
            return Signer.from_key_file(self.read_secret(path))
        except KeyFormatError as exc:
            raise DataDirError(f"{path}: {exc}") from None

    def create_token(self, path: Path) -> None:
        """A new bearer token (32 random bytes, URL-safe base64, one line) at `path`, 0600."""
        self.write_secret(path, (secrets.token_urlsafe(32) + "\n").encode())

    def read_token(self, path: Path) -> str:
        return self.read_secret(path).decode("ascii", "replace").strip()

    def admin_token(self) -> str:
        return self.read_token(self.admin_token_path)

    def match_token(self, create: bool = False) -> str:
        """The match API's token; with `create`, made first if missing (`init` makes it
        for a platform node, a node's start for a data directory older than it)."""
        return self._token(self.match_token_path, create)

    def metrics_token(self, create: bool = False) -> str:
        """The token of GET /metrics only (what Prometheus is given); made like the
        match token."""
        return self._token(self.metrics_token_path, create)

    def _token(self, path: Path, create: bool) -> str:
        if create and not path.exists():
            try:
                self.create_token(path)
            except FileExistsError:  # made at this moment by another process: read that one
                pass
        return self.read_token(path)

    # -- the writer lock -------------------------------------------------------------------
    def acquire_lock(self, *, shared: bool = False) -> None:
        """Take the exclusive lock that makes this process the only writer of the log;
        `shared`: a lock that only says a node serves DIR (a PostgreSQL node, whose
        several processes share the directory; node/log/lease.py decides who writes).

        flock(2) locks are released by the kernel when the process dies, even by
        SIGKILL, so a crash never leaves a stale lock behind."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirError(f"another ncii-node process is already serving {self.root} "
                                   "(only one process may write a log)") from None
            raise
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def is_locked_by_other(self) -> bool:
        """True when some process holds the lock, exclusive or shared (a node is serving DIR)."""
        if not self.lock_path.exists():
            return False
        fd = os.open(self.lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # -- serve.json -------------------------------------------------------------------------
    def write_serve_info(self, info: dict) -> None:
        write_atomic(self.serve_info_path, (json.dumps(info, indent=1) + "\n").encode(), mode=0o644)

    def read_serve_info(self) -> dict | None:
        try:
            return json.loads(self.serve_info_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def serving_node(self) -> dict | None:
        """Where the commands reach the node serving DIR now: the serve.json of its live
        process started last, or None when none lives (a process killed -9 leaves its
        files behind, but not their locks)."""
        live = self.serving_processes()
        if live:
            return live[0]
        info = self.read_serve_info()  # a process that keeps no DIR/serve.d (an older version)
        return info if info and self.is_locked_by_other() else None

    # -- serve.d: every live serving process ------------------------------------------------
    def announce_serving(self, info: dict) -> tuple[int, Path]:
        """Record this serving process: DIR/serve.d/PID.json, exclusively flock'ed from
        before it appears until the process ends (the kernel drops the lock of a killed
        one), and serve.json. Returns the file's descriptor and path, for
        `withdraw_serving`. Files of processes that died are removed here."""
        self.serving_dir.mkdir(exist_ok=True, mode=0o755)
        self._remove_dead_serving()
        # PID.json; PID.N.json for a second node served by one process (tests do that)
        final = self.serving_dir / f"{os.getpid()}.json"
        number = 1
        while final.exists():
            final = self.serving_dir / f"{os.getpid()}.{number}.json"
            number += 1
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, (json.dumps(info) + "\n").encode())
            os.replace(tmp, final)  # appears locked already: never taken for a dead one
        except BaseException:
            os.close(fd)
            raise
        self.write_serve_info(info)
        return fd, final

    def withdraw_serving(self, announced: tuple[int, Path]) -> None:
        """This process stops serving: its DIR/serve.d file goes, and serve.json, when it
        names this process, names the live process started last instead (or goes)."""
        fd, path = announced
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
        info = self.read_serve_info()
        if info is None or info.get("pid") == os.getpid():
            live = self.serving_processes()
            if live:
                self.write_serve_info(live[0])
            else:
                self.remove_serve_info()

    def serving_processes(self) -> list[dict]:
        """The serve.json of every live serving process of DIR, the last started first."""
        found = []
        for path, alive in self._serving_files():
            if alive is not None:
                found.append((alive[0], alive[1]))
        return [info for _, info in sorted(found, key=lambda item: item[0], reverse=True)]

    def _serving_files(self):
        """(path, (mtime, info) if its process lives, else None) for each DIR/serve.d file."""
        try:
            paths = sorted(self.serving_dir.glob("*.json"))
        except OSError:
            return []
        out = []
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # gone meanwhile: that process stopped
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:  # its process holds it: alive
                    try:
                        info = json.loads(os.read(fd, 65536))
                        out.append((path, (os.fstat(fd).st_mtime_ns, info) if isinstance(info, dict) else None))
                    except ValueError:
                        out.append((path, None))
                    continue
                out.append((path, None))
            finally:
                os.close(fd)
        return out

    def _remove_dead_serving(self) -> None:
        for path, alive in self._serving_files():
            if alive is None:
                path.unlink(missing_ok=True)

    def remove_serve_info(self) -> None:
        try:
            self.serve_info_path.unlink()
        except FileNotFoundError:
            pass
