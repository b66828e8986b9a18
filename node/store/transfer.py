"""Moving a node's store from one engine to the other (`ncii-node migrate`): every table of
every area, and the tiles, copied into an empty target, then checked.

    report = transfer(source_db, source_tiles, target_db, target_tiles)

The source is opened (and migrated) first, so both sides have the same areas at the same
versions; the target must hold no node (`TargetNotEmpty`, nothing written). The rows go
in ONE transaction of the target (all or nothing), parents before children (`cases`
before `case_entries`), and the summary tables last: the target's triggers count cases
as they arrive, so each summary table is emptied and copied whole after them. Identity
columns (PostgreSQL) are moved past the greatest copied id. Tiles go in batches (a tile
is idempotent: a second run would find the same bytes).

Then `verify` checks the copy against the source's checkpoints: the same number of
rows in every table, every recorded checkpoint's root recomputed from the copied
entries' leaf hashes, and the latest checkpoint's tiles in the target verified against
its root (protocol.tiles.verify_tiles). Any difference raises TransferError.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.edge import TreeEdge
from protocol.tiles import tiles_for_size, verify_tiles

#: Tables filled by the target's own migrations, emptied before the copy.
SEEDED = ("unknown_case_attempts",)
#: Summary tables (node/store/stats.py) written by triggers on `cases`: copied last.
SUMMARY_PREFIX = "stats_"
BATCH = 5000


class TransferError(RuntimeError):
    """The copy failed or does not match its source; the message says why."""


class TargetNotEmpty(TransferError):
    """The target already holds a node (or some of one): nothing was written."""


@dataclass
class TransferReport:
    tables: dict[str, int]   # table -> rows copied
    tiles: int
    size: int                # the latest checkpoint's size (0: none)
    entries: int


def tables(db) -> list[str]:
    """The node's tables in this database, in copy order."""
    if db.dialect == "postgresql":
        names = [r[0] for r in db.execute("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    else:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                          "AND name NOT LIKE 'sqlite_%'")]
    names = [n for n in names if n != "schema_versions"]
    return sorted(names, key=lambda n: (n.startswith(SUMMARY_PREFIX), n != "cases", n))


def shared_tables(source, target) -> list[str]:
    """The tables both engines keep, in copy order: the tiles and the replay journal are
    tables in PostgreSQL only (node/store/dbtiles.py, replay.py), files beside SQLite."""
    kept = set(tables(target))
    return [t for t in tables(source) if t in kept]


def _columns(db, table: str) -> list[str]:
    return [d[0] for d in db.execute(f"SELECT * FROM {table} LIMIT 0").description]


def _count(db, table: str) -> int:
    return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _rows(db, sql: str):
    """The rows of `sql`, streamed (a PostgreSQL server-side cursor: flat memory)."""
    if db.dialect == "postgresql":
        with db.raw.transaction(), db.raw.cursor(name="ncii_transfer") as cursor:
            cursor.execute(sql)
            while rows := cursor.fetchmany(BATCH):
                yield from rows
    else:
        yield from db.execute(sql)


def check_empty(db, tile_store) -> None:
    held = [t for t in tables(db) if t not in SEEDED and _count(db, t)]
    if held or next(iter(tile_store.items()), None) is not None:
        raise TargetNotEmpty(f"the target already holds a node's data ({', '.join(held[:5]) or 'tiles'}); "
                             "give an empty database (or data directory)")


def transfer(source, source_tiles, target, target_tiles) -> TransferReport:
    """Copy everything (see the module docstring). Raises TargetNotEmpty, TransferError."""
    check_empty(target, target_tiles)
    ours = shared_tables(source, target)
    copied: dict[str, int] = {}
    with target.atomic():
        for table in ours:
            columns = _columns(source, table)
            target.execute(f"DELETE FROM {table}")
            insert = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})")
            batch: list = []
            n = 0
            for row in _rows(source, f"SELECT {', '.join(columns)} FROM {table}"):
                batch.append(tuple(row))
                if len(batch) >= BATCH:
                    target.conn.executemany(insert, batch)
                    n += len(batch)
                    batch = []
            if batch:
                target.conn.executemany(insert, batch)
                n += len(batch)
            copied[table] = n
            if target.dialect == "postgresql" and "id" in columns:
                target.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"GREATEST((SELECT MAX(id) FROM {table}), 1), (SELECT MAX(id) FROM {table}) IS NOT NULL) "
                               f"WHERE pg_get_serial_sequence('{table}', 'id') IS NOT NULL")
    tiles = 0
    batch_tiles: list[tuple[str, bytes]] = []
    for item in source_tiles.items():
        batch_tiles.append(item)
        if len(batch_tiles) >= 500:
            tiles += target_tiles.write_all(batch_tiles)
            batch_tiles = []
    if batch_tiles:
        tiles += target_tiles.write_all(batch_tiles)
    latest = target.log.latest_checkpoint()
    return TransferReport(copied, tiles, latest.size if latest else 0, target.log.entry_count())


def verify(source, target, target_tiles) -> None:
    """The copy against the source's checkpoints (module docstring). Raises TransferError."""
    for table in shared_tables(source, target):
        if _count(source, table) != _count(target, table):
            raise TransferError(f"table {table}: {_count(source, table)} rows in the source, "
                                f"{_count(target, table)} in the copy")
    checkpoints = [(r[0], r[1]) for r in source.execute("SELECT size, root_hash FROM log_checkpoints ORDER BY size")]
    edge = TreeEdge()
    for size, root in checkpoints:
        hashes = [leaf for _, _, leaf in target.log.iter_entries(edge.size, size)]
        if len(hashes) != size - edge.size:
            raise TransferError(f"the copy lacks entries below the checkpoint of size {size}")
        edge.append(hashes)
        if edge.root() != bytes(root):
            raise TransferError(f"the copied entries do not give the root of the checkpoint of size {size}")
    if checkpoints:
        size, root = checkpoints[-1]
        tiles = {}
        for tile in tiles_for_size(size):
            data = target_tiles.read(tile.path())
            if data is None:
                raise TransferError(f"the copy lacks the tile {tile.path()} of the latest checkpoint")
            tiles[tile] = data
        try:
            verify_tiles(size, bytes(root), tiles)
        except Exception as exc:  # noqa: BLE001 -- protocol errors: the tiles do not prove the root
            raise TransferError(f"the copied tiles do not verify against the latest checkpoint: {exc}") from None
