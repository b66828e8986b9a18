"""The leaf hashes of every followed log, as the level-0 tiles the follower verified.

- `followed_leaf_tiles(origin, tile, width, hashes)`: the level-0 hash tile `tile` of
  the log, `width` hashes (32 bytes each) as verified against a signed checkpoint in
  the round that applied those entries; a partial tile is replaced by a wider one.

Why: a log that shows a smaller checkpoint than one it signed, and withholds its old
tiles, must not escape with no evidence. With its leaf hashes kept, the follower
computes itself the root of the log's first n leaves and the consistency proof from
n to its verified size (node/follow/forks.py `stored_tree`): real evidence that
`audit verify-evidence` accepts, whatever the log serves. Cost: 32 bytes per entry of
each followed log, written once per tile (spec/parts/following.md §6.1).

Rounds stage tiles in a connection-private TEMP table while they verify (no lock), and
move them in their one write transaction, like node/store/follow.py. This module is the
only code that touches these tables.

Contract of LeafTileRepository (`db.follow_leaves`): as FollowRepository's round
(`stage` while verifying, `move_staged` inside the round's transaction); a kept tile is
only replaced by a wider one, so `leaf_hashes` never loses what was verified.
"""

from __future__ import annotations

import sqlite_utils

AREA = "follow_leaves"
TILE_WIDTH = 256
HASH_SIZE = 32


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE followed_leaf_tiles (
        origin TEXT NOT NULL,
        tile INTEGER NOT NULL,
        width INTEGER NOT NULL,
        hashes BLOB NOT NULL,
        PRIMARY KEY (origin, tile)
    ) WITHOUT ROWID""")


MIGRATIONS = [_v1]


class LeafTileRepository:
    """The verified leaf hashes of every followed log (contract above)."""

    def __init__(self, db):
        self.db = db

    def reset_staging(self, origin: str) -> None:
        self.db.execute("""CREATE TEMP TABLE IF NOT EXISTS staged_leaf_tiles (
            origin TEXT NOT NULL, tile INTEGER NOT NULL, width INTEGER NOT NULL, hashes BLOB NOT NULL,
            PRIMARY KEY (origin, tile)) WITHOUT ROWID""")
        self.db.execute("DELETE FROM temp.staged_leaf_tiles WHERE origin = ?", (origin,))

    def stage(self, origin: str, tiles: list[tuple[int, int, bytes]]) -> None:
        """(tile index, width, hashes) of level-0 tiles verified in this round."""
        self.db.conn.executemany("INSERT INTO temp.staged_leaf_tiles VALUES (?, ?, ?, ?) ON CONFLICT (origin, tile) "
                                 "DO UPDATE SET width = excluded.width, hashes = excluded.hashes",
                                 ((origin, *row) for row in tiles))

    def move_staged(self, origin: str) -> None:
        """Inside the round's transaction: keep each staged tile unless a wider one is kept."""
        self.db.execute("INSERT INTO followed_leaf_tiles (origin, tile, width, hashes) "
                        "SELECT origin, tile, width, hashes FROM temp.staged_leaf_tiles WHERE origin = ? "
                        "ON CONFLICT(origin, tile) DO UPDATE SET width = excluded.width, hashes = excluded.hashes "
                        "WHERE excluded.width > followed_leaf_tiles.width", (origin,))

    def leaf_hashes(self, origin: str, size: int) -> list[bytes] | None:
        """The first `size` leaf hashes of the log, or None if some were never kept (a log
        followed before this table existed)."""
        tiles = dict(((tile, (width, hashes)) for tile, width, hashes in self.db.execute(
            "SELECT tile, width, hashes FROM followed_leaf_tiles WHERE origin = ? AND tile < ? ORDER BY tile",
            (origin, (size + TILE_WIDTH - 1) // TILE_WIDTH))))
        out: list[bytes] = []
        for tile in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
            need = min(TILE_WIDTH, size - tile * TILE_WIDTH)
            width, hashes = tiles.get(tile, (0, b""))
            if width < need:
                return None
            out.extend(hashes[i * HASH_SIZE:(i + 1) * HASH_SIZE] for i in range(need))
        return out

    def forget(self, origin: str) -> None:
        self.db.execute("DELETE FROM followed_leaf_tiles WHERE origin = ?", (origin,))
