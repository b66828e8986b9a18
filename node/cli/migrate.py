"""`ncii-node migrate --dir DIR --to postgresql://...|sqlite`: move a stopped node's store
(every table and the tiles) to PostgreSQL, or back to SQLite files in DIR."""

from __future__ import annotations

from node.cli._common import add_dir_argument, fail, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "migrate",
        help="move the node's store to PostgreSQL (or back to SQLite)",
        description="Copies everything the stopped node at DIR keeps -- entries, checkpoints, tiles and bundles, "
        "cases, follow state, fingerprints, feedback, witness state, readers -- into the target, which must be "
        "empty: a PostgreSQL database (--to postgresql://user@host:port/dbname) or SQLite files in DIR (--to "
        "sqlite: [paths] db and tiles, which must not exist yet). Checks the copy against every checkpoint the "
        "log published (roots recomputed from the copied entries, the latest checkpoint's tiles verified), then "
        "points config.toml at it. The old store is left untouched: remove it once the node runs well.",
    )
    add_dir_argument(p, help="the node's data directory (the node must be stopped)")
    p.add_argument("--to", required=True, metavar="TARGET", help="postgresql://... or sqlite")
    p.add_argument("--password-file", metavar="FILE", help="with a PostgreSQL target: a file holding the password")
    p.add_argument("--password-env", metavar="VAR", help="with a PostgreSQL target: an environment variable "
                   "holding the password")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import copy
    import shutil
    import time
    from pathlib import Path

    from node.config import ConfigError
    from node.datadir import DataDir
    from node.store import open_db
    from node.store.tiles import TileStore
    from node.store.transfer import TransferError, transfer, verify

    source = DataDir(args.dir)
    config = source.config
    if source.serving_node() is not None:
        return fail(f"a node is serving {source.root}; stop it first (`ncii-node migrate` needs it stopped)")
    target_config = copy.deepcopy(config)
    if args.to == "sqlite":
        if not source.uses_postgres:
            return fail("this node already keeps its store in SQLite")
        target_config.database.url = target_config.database.password_file = target_config.database.password_env = ""
    else:
        target_config.database.url = args.to
        target_config.database.password_file = str(Path(args.password_file).absolute()) if args.password_file else ""
        target_config.database.password_env = args.password_env or ""
        try:
            target_config.database.validate()
        except ConfigError as exc:
            return fail(str(exc))
        if source.uses_postgres and config.database.url == args.to:
            return fail("the target is the node's own database")
    target = DataDir(source.root, target_config)
    if not target.uses_postgres and (Path(target.db_path).exists() or target.tiles_dir.exists()):
        return fail(f"{target.db_path} or {target.tiles_dir} exists already; move it away first")

    started = time.monotonic()
    source_db = open_db(source.db_path)
    source_tiles = TileStore.of(source)
    try:
        try:
            target_db = open_db(target.db_path)
        except Exception as exc:  # noqa: BLE001 -- psycopg's: unreachable, refused, no such database
            return fail(f"cannot open the target database: {str(exc).strip().splitlines()[0]}")
        if not target.uses_postgres:
            TileStore.of(target).prepare()
        target_tiles = TileStore.of(target)
        try:
            report = transfer(source_db, source_tiles, target_db, target_tiles)
            verify(source_db, target_db, target_tiles)
        except TransferError as exc:
            target_tiles.close()
            target_db.close()
            if not target.uses_postgres:  # nothing half made is left behind
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{target.db_path}{suffix}").unlink(missing_ok=True)
                shutil.rmtree(target.tiles_dir, ignore_errors=True)
            return fail(f"migrate: {exc}")
        target_tiles.close()
        target_db.close()
    finally:
        source_tiles.close()
        source_db.close()
    source.save_config(target_config)
    where = target_config.database.url if target.uses_postgres else f"SQLite ({target.db_path})"
    print(f"copied {sum(report.tables.values())} rows of {len(report.tables)} tables and {report.tiles} tiles "
          f"into {where} in {time.monotonic() - started:.1f} s; checked against every published checkpoint "
          f"(latest: size {report.size}; {report.entries} entries stored)")
    print(f"config.toml now points at {where}; the old store is untouched (remove it once the node runs well)")
    print(f"next: ncii-node serve --dir {args.dir}")
    return 0
