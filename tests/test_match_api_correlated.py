"""The match API on correlated fingerprints with near-duplicate groups (issue 19): a real
node (`RunningNode`, real HTTP on 127.0.0.1) built from a database of correlated PDQ
(scripts/pdq_distributions.py, 5 % in clusters of about 100 near-duplicates, which the
index keeps as groups counted by structure), asked batches at clusters, near them and
at random; every answer (nearest 100, their order, and the total) equals brute force."""

from __future__ import annotations

import numpy as np

from node.store import open_db

from test_match_api import Platform, flip
from test_pdq_index_distributions import dist

ORIGIN = "helpline.example/correlated"


def _popcount_distances(matrix: np.ndarray, query: bytes) -> np.ndarray:
    x = np.bitwise_xor(matrix, np.frombuffer(query, dtype=np.uint8))
    return np.unpackbits(x, axis=1).sum(axis=1)


async def test_batches_on_correlated_data_with_groups_equal_brute_force(tmp_path, start_node):
    data = dist.make("correlated", 40_000, seed=19)
    fps = data.fingerprints
    platform = Platform(tmp_path, start_node, None)
    db = open_db(platform.datadir.db_path)
    with db.atomic():
        db.conn.executemany(
            "INSERT INTO fingerprints (origin, idx, signal, fingerprint, quality, labels, day, leaf_hash) "
            "VALUES (?, ?, 'pdq', ?, 90, '', 0, ?)",
            ((ORIGIN, i, fps[i].tobytes(), b"\x00" * 32) for i in range(len(fps))))
    db.close()
    await platform.start()
    try:
        status = await platform.wait(lambda s: s["ready"] and s["pdq"] == len(fps), "the index is built")
        assert status["groups"] > 0 and status["grouped"] > 1000  # near-duplicates counted by structure
        rng = np.random.default_rng(5)
        queries = []
        for k, centre in enumerate(data.centres[:150]):  # at a cluster: its original, 0..3 bits off
            queries.append(flip(centre.tobytes(), k % 4, rng))
        for centre in data.centres[150:250]:             # where the threshold cuts a cluster
            queries.append(flip(centre.tobytes(), int(rng.integers(20, 36)), rng))
        for i in rng.integers(0, len(fps), 150).tolist():  # near any entry
            queries.append(flip(fps[i].tobytes(), int(rng.integers(0, 40)), rng))
        queries += [fp.tobytes() for fp in data.unrelated(rng, 600)]
        queries = queries[:1000]
        code, answer = await platform.post("/v1/match", {"fingerprints": [{"signal": "pdq", "fingerprint": q.hex()}
                                                                         for q in queries]})
        assert code == 200 and len(answer["results"]) == len(queries)
        over_limit = 0
        for q, result in zip(queries, answer["results"]):
            distances = _popcount_distances(fps, q)
            within = np.flatnonzero(distances <= 31)
            expected = sorted((int(distances[i]), int(i)) for i in within)
            assert result["total"] == len(expected)
            assert [(m["distance"], m["index"]) for m in result["matches"]] == expected[:100]
            assert all(m["origin"] == ORIGIN for m in result["matches"])
            over_limit += len(expected) > 100
        assert over_limit >= 10  # queries at clusters whose total is counted beyond the 100 listed
    finally:
        await platform.close()
