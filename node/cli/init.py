"""`ncii-node init`: create a node's data directory (config, keys, token, database, tiles)."""

from __future__ import annotations

from node.cli._common import add_dir_argument, fail


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "init",
        help="create a data directory for a new node",
        description="Creates DIR with config.toml, an Ed25519 log key, a request key and an "
        "acknowledgement key (mode 0600), the admin token and the metrics token (0600) and, for a platform, the "
        "match token (0600), the "
        "SQLite database (WAL) and the tiles folder -- or, with --database, the node's tables in an empty "
        "PostgreSQL database (spec/parts/storage.md).",
    )
    add_dir_argument(p, help="data directory to create (must be absent or empty)")
    p.add_argument("--origin", required=True,
                   help="the log's origin line, e.g. example.org/helpline (its URL without scheme)")
    p.add_argument("--role", choices=("helpline", "platform", "witness"), default="helpline",
                   help="what this node does (default: helpline)")
    p.add_argument("--public-read", action="store_true",
                   help="let anyone fetch tiles and entry bundles (default: registered readers only)")
    p.add_argument("--host", help="address of the public site (default 127.0.0.1; behind a reverse proxy "
                   "keep it on loopback)")
    p.add_argument("--port", type=int, help="port of the public site, kept in config.toml (default 8080)")
    p.add_argument("--admin-port", type=int,
                   help="port of the admin site (loopback), kept in config.toml (default 0: a free port "
                   "each start, announced in DIR/serve.json; fix it for monitoring)")
    p.add_argument("--database", metavar="URL",
                   help="keep everything in this PostgreSQL database (postgresql://user@host:port/dbname, "
                   "no password in it) instead of SQLite files; it must hold no node yet")
    p.add_argument("--database-password-file", metavar="FILE",
                   help="with --database: a file holding the password (kept as [database] password_file)")
    p.add_argument("--database-password-env", metavar="VAR",
                   help="with --database: an environment variable holding the password")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from node.config import Config, ConfigError, is_public_name
    from node.datadir import DataDir
    from node.readaccess import request_vkey
    from node.store import open_db
    from protocol.errors import KeyFormatError
    from protocol.note import Signer

    root = Path(args.dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        return fail(f"{root} exists and is not an empty directory; choose a new --dir")
    config = Config()
    config.node.origin = args.origin
    config.node.role = args.role
    config.http.public_read = bool(args.public_read)
    # Signed reads are bound to the node's names; the origin's host is where its log
    # is expected to be served (publishing.md §1). serve adds its listening address.
    host = args.origin.split("/", 1)[0].lower()
    config.http.public_names = [host] if is_public_name(host) else []
    if args.host is not None:
        config.http.host = args.host
    if args.port is not None:
        config.http.port = args.port
    if args.admin_port is not None:
        config.admin.port = args.admin_port
    if args.database:
        config.database.url = args.database
        config.database.password_file = str(Path(args.database_password_file or "").absolute()) \
            if args.database_password_file else ""
        config.database.password_env = args.database_password_env or ""
    elif args.database_password_file or args.database_password_env:
        return fail("--database-password-file and --database-password-env need --database")
    try:
        config.validate()
        log_key = Signer.generate(args.origin)
        request_key = Signer.generate(args.origin)
        request_vkey(request_key.name, request_key.public_key)  # the request key name must suit RFC 9421 too
    except (ConfigError, KeyFormatError) as exc:
        return fail(str(exc))

    if args.database:
        problem = _database_problem(DataDir(root, config))
        if problem:
            return fail(problem)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)  # also when DIR existed (empty): nobody else reads a node's directory
    datadir = DataDir(root, config)
    datadir.save_config(config)
    datadir.write_secret(datadir.log_key_path, log_key.to_key_file())
    datadir.write_secret(datadir.request_key_path, request_key.to_key_file())
    ack_key = datadir.load_ack_signer(create=True)
    datadir.create_token(datadir.admin_token_path)
    datadir.create_token(datadir.metrics_token_path)
    if args.role == "platform":
        datadir.create_token(datadir.match_token_path)
    open_db(datadir.db_path).close()
    if not args.database:
        datadir.tiles_dir.mkdir(parents=True, exist_ok=True)

    print(f"created {datadir.root} for log {args.origin} ({args.role})")
    if args.database:
        print(f"database: PostgreSQL {config.database.url} (entries, tiles, cases: everything)")
    print(f"log verifier key:     {log_key.verifier_key()}")
    print(f"request key (reader): {request_vkey(request_key.name, request_key.public_key)}")
    print(f"acknowledgement key:  {ack_key.verifier_key()}")
    print(f"reading: {'anyone' if args.public_read else 'registered readers only (ncii-node readers add)'}")
    if not args.public_read:
        names = ", ".join(config.http.public_names) or "none"
        print(f"signed reads accepted when sent to: {names} (and the address `serve` listens on); "
              "list every name readers use in [http] public_names of config.toml")
    print(f"next: ncii-node serve --dir {args.dir}")
    return 0


def _database_problem(datadir) -> str | None:
    """Why the PostgreSQL database cannot take this new node (None: it can)."""
    from node.datadir import DataDirError
    from node.store import StoreError, open_db

    try:
        db = open_db(datadir.db_path)
    except (DataDirError, StoreError) as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 -- psycopg's errors: unreachable, refused, no such database
        return f"cannot open the database {datadir.config.database.url}: {str(exc).strip().splitlines()[0]}"
    try:
        if db.log.entry_count() or db.log.latest_checkpoint() is not None:
            return (f"the database {datadir.config.database.url} already holds a node's log; "
                    "give an empty database (createdb) to a new node")
    finally:
        db.close()
    return None
