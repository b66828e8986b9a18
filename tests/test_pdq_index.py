"""The PDQ index returns exactly what a brute-force scan returns, through every path:
table probes, full scans, the overflow list of recent adds, merges, rebuilds,
removals (tombstones) and batch searches on several threads."""

from __future__ import annotations

import random
import sqlite3
import threading

import numpy as np
import pytest

from node.matcher.pdq_index import PDQIndex
from protocol.errors import SignalError, UsageError

THRESHOLDS = [0, 1, 7, 15, 16, 30, 31, 32, 40, 70, 100]


def flip_bits(fingerprint: bytes, distance: int, rng: np.random.Generator) -> bytes:
    bits = np.unpackbits(np.frombuffer(fingerprint, dtype=np.uint8))
    bits[rng.choice(256, size=distance, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def brute_force(model: dict[int, bytes], query: bytes, threshold: int) -> list[tuple[int, int]]:
    if not model:
        return []
    ids = np.fromiter(model.keys(), dtype=np.int64, count=len(model))
    matrix = np.frombuffer(b"".join(model.values()), dtype=np.uint8).reshape(-1, 32)
    distances = np.unpackbits(matrix ^ np.frombuffer(query, dtype=np.uint8), axis=1).sum(axis=1)
    keep = distances <= threshold
    return sorted(zip(ids[keep].tolist(), distances[keep].tolist()), key=lambda pair: (pair[1], pair[0]))


def found(index: PDQIndex, query: bytes, threshold: int, mode: str = "auto") -> list[tuple[int, int]]:
    return [(match.id, match.distance) for match in index.search(query, threshold, mode=mode)]


@pytest.fixture(scope="module")
def planted():
    """20,000 random fingerprints, and for each of 12 queries items planted at every
    distance 0..40 from it (several at 31 and 32, the edge of the default threshold)."""
    rng = np.random.default_rng(7)
    model = {i: rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for i in range(20000)}
    queries = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(12)]
    next_id = 20000
    for query in queries:
        for distance in list(range(41)) + [31, 31, 32, 32]:
            model[next_id] = flip_bits(query, distance, rng)
            next_id += 1
    return model, queries


@pytest.mark.parametrize("widths", [None, [16] * 16, [20] * 12, [9] * 28])
def test_equals_brute_force_with_planted_neighbours(planted, widths):
    model, queries = planted
    index = PDQIndex.from_arrays(list(model), list(model.values()), table_widths=widths)
    assert len(index) == len(model)
    for query in queries:
        everything = brute_force(model, query, 256)
        for threshold in THRESHOLDS:
            expected = [(id, distance) for id, distance in everything if distance <= threshold]
            for mode in ("auto", "tables", "scan"):
                assert found(index, query, threshold, mode) == expected, (widths, threshold, mode)


def test_edge_of_default_threshold(planted):
    model, queries = planted
    index = PDQIndex.from_arrays(list(model), list(model.values()), table_widths=[16] * 16)
    for query in queries:
        distances = [distance for _, distance in found(index, query, 31, "tables")]
        assert distances.count(31) == 3 and 32 not in distances
        assert max(distances) == 31 and min(distances) == 0
        assert [d for _, d in found(index, query, 32, "tables")].count(32) == 3


def test_plans_are_exact_by_pigeonhole(planted):
    model, _ = planted
    index = PDQIndex.from_arrays(list(model), list(model.values()), table_widths=[16] * 16)
    for threshold in range(0, 80):
        plan = index.plan(threshold)
        if not plan["scan"]:
            assert sum(radius + 1 for radius in plan["radii"] if radius >= 0) >= threshold + 1
    assert index.plan(31)["radii"] == [1] * 16  # the HMA layout: 0- and 1-bit flips everywhere
    assert index.plan(200)["scan"]
    everything = index.search(b"\x5a" * 32, 256, mode="tables")
    assert sorted(match.id for match in everything) == sorted(model)


def test_batch_equals_single(planted):
    model, queries = planted
    index = PDQIndex.from_arrays(list(model), list(model.values()))
    rng = np.random.default_rng(3)
    batch = queries + [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(200)]
    single = [index.search(query) for query in batch]
    for threads in (1, 2, 3):
        assert index.search_many(batch, threads=threads) == single
    assert index.search_many(np.frombuffer(b"".join(batch), dtype=np.uint8).reshape(-1, 32), 12) == [
        index.search(query, 12) for query in batch
    ]
    queries_out, ids, distances = index.search_arrays(batch)
    assert len(queries_out) == len(ids) == len(distances) == sum(len(result) for result in single)
    assert index.search_many([]) == []


def test_removal_takes_effect_at_once_and_re_add_restores(planted):
    model, queries = planted
    index = PDQIndex.from_arrays(list(model), list(model.values()))
    query = queries[0]
    before = found(index, query, 31)
    victim, _ = before[0]
    assert index.remove(victim) is True
    assert index.remove(victim) is False
    assert victim not in index and index.fingerprint(victim) is None
    assert victim not in [id for id, _ in found(index, query, 31)]
    assert all(victim not in [m.id for m in result] for result in index.search_many([query] * 4))
    index.add(victim, model[victim])  # back, with the same fingerprint
    assert found(index, query, 31) == before
    assert index.remove_many([id for id, _ in before] + [10**9]) == len(before)
    assert found(index, query, 31) == []
    assert found(index, query, 31, "scan") == []


def test_replacing_a_fingerprint_moves_the_item_without_duplicates(planted):
    model, queries = planted
    model = dict(model)
    index = PDQIndex.from_arrays(list(model), list(model.values()), overflow_max=4)
    target = found(index, queries[0], 31)[0][0]
    for round_number in range(3):
        new = queries[1 + round_number]
        index.add(target, new)  # the tables still hold the old fingerprint
        model[target] = new
        for query in queries[:5]:
            assert found(index, query, 31) == brute_force(model, query, 31)
        for i in range(6):  # push the overflow past its limit: a merge (here: a rebuild)
            index.add(10**6 + 10 * round_number + i, flip_bits(queries[0], 3, np.random.default_rng(i)))
            model[10**6 + 10 * round_number + i] = index.fingerprint(10**6 + 10 * round_number + i)
        for query in queries[:5]:
            assert found(index, query, 31) == brute_force(model, query, 31)


def test_random_operations_match_a_model():
    """Adds, replacements, removals and re-adds in random order, through overflow
    scans, in-place merges and rebuilds, always equal brute force."""
    rng = np.random.default_rng(11)
    pyrandom = random.Random(11)
    base = {i: rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for i in range(3000)}
    index = PDQIndex.from_arrays(list(base), list(base.values()), table_widths=[12] * 21, overflow_max=50)
    model = dict(base)
    queries = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(6)]
    history = dict(model)  # the last fingerprint each id ever had
    for step in range(2000):
        action = pyrandom.random()
        if action < 0.45:  # a new item near some query
            new_id = 3000 + len(history) if pyrandom.random() < 0.98 else pyrandom.randrange(0, 8000)
            fingerprint = flip_bits(pyrandom.choice(queries), pyrandom.randrange(0, 40), rng)
            index.add(new_id, fingerprint)
            model[new_id] = history[new_id] = fingerprint
        elif action < 0.8 and model:
            victim = pyrandom.choice(list(model))
            assert index.remove(victim)
            del model[victim]
        else:  # re-add an id seen before, mostly as it was, sometimes with a new fingerprint
            again = pyrandom.choice(sorted(history))
            if pyrandom.random() < 0.97:
                fingerprint = history[again]
            else:
                fingerprint = flip_bits(pyrandom.choice(queries), pyrandom.randrange(0, 35), rng)
            index.add(again, fingerprint)
            model[again] = history[again] = fingerprint
        if step % 50 == 0:
            for query in queries:
                threshold = pyrandom.choice([31, 31, 20, 36])
                assert found(index, query, threshold, "tables") == brute_force(model, query, threshold), step
        if step % 400 == 399:
            index.rebuild()
    assert len(index) == len(model)
    stats = index.stats()
    assert stats["live"] == len(model)
    assert stats["merges"] >= 3 and stats["rebuilds"] >= 3  # both ways of growing the tables ran
    for query in queries:
        assert found(index, query, 31) == brute_force(model, query, 31)


def test_index_before_any_build_and_bulk_load():
    rng = np.random.default_rng(5)
    index = PDQIndex()
    query = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    assert index.search(query) == [] and len(index) == 0
    index.add(4, flip_bits(query, 31, rng))
    index.add(9, flip_bits(query, 32, rng))
    assert found(index, query, 31) == [(4, 31)]
    with index.bulk_load():
        index.add_many(np.arange(100, 5100), rng.integers(0, 256, (5000, 32), dtype=np.uint8))
        assert found(index, query, 31) == [(4, 31)]  # still exact while deferred
    assert index.stats()["built"] and index.stats()["overflow"] == 0
    assert found(index, query, 31, "tables") == [(4, 31)]
    assert found(index, query, 32, "tables") == [(4, 31), (9, 32)]


def test_duplicates_and_partial_coverage_of_the_bits():
    rng = np.random.default_rng(9)
    query = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    model = {i: rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for i in range(2000)}
    for i in range(2000, 2010):
        model[i] = query  # ten items with the same fingerprint
    model[2010] = flip_bits(query, 31, rng)
    # 12 x 20 = 240 bits: 16 bits belong to no table, the pigeonhole bound still holds
    index = PDQIndex.from_arrays(list(model), list(model.values()), table_widths=[20] * 12)
    for threshold in (0, 31, 35):
        assert found(index, query, threshold, "tables") == brute_force(model, query, threshold)


def test_from_sqlite(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "fingerprints.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE fingerprints (id INTEGER PRIMARY KEY, fingerprint BLOB NOT NULL)")
    rows = [(i * 3, rng.integers(0, 256, 32, dtype=np.uint8).tobytes()) for i in range(3000)]
    connection.executemany("INSERT INTO fingerprints VALUES (?, ?)", rows)
    connection.commit()
    index = PDQIndex.from_sqlite(connection, "SELECT id, fingerprint FROM fingerprints", chunk=1000)
    connection.close()
    assert len(index) == 3000 and index.fingerprint(2997) == rows[999][1]
    assert found(index, rows[500][1], 31) == [(1500, 0)]


def test_searches_and_removals_from_several_threads():
    rng = np.random.default_rng(4)
    fingerprints = rng.integers(0, 256, (40000, 32), dtype=np.uint8)
    index = PDQIndex.from_arrays(np.arange(40000), fingerprints)
    queries = fingerprints[:2000]
    stop = threading.Event()
    errors: list[BaseException] = []

    def search_forever():
        try:
            while not stop.is_set():
                index.search_many(queries, threads=2)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    worker = threading.Thread(target=search_forever)
    worker.start()
    try:
        for id in range(0, 2000, 2):
            assert index.remove(id)
            assert index.search(fingerprints[id].tobytes(), 0) == []
    finally:
        stop.set()
        worker.join()
    assert not errors
    result = index.search_many(queries, 0)
    assert [len(matches) for matches in result] == [0, 1] * 1000


def test_bad_input_is_refused_with_a_clear_error():
    index = PDQIndex()
    with pytest.raises(SignalError, match="32 bytes"):
        index.search(b"\x00" * 31)
    with pytest.raises(SignalError, match="32 bytes"):
        index.add(1, b"\x00" * 33)
    with pytest.raises(SignalError):
        index.search_many([b"\x00" * 32, b"\x00"])
    with pytest.raises(UsageError, match="threshold"):
        index.search(b"\x00" * 32, 257)
    with pytest.raises(UsageError, match="threshold"):
        index.search(b"\x00" * 32, -1)
    with pytest.raises(UsageError, match="threshold"):
        PDQIndex(threshold=300)
    with pytest.raises(UsageError, match="id"):
        index.add(-1, b"\x00" * 32)
    with pytest.raises(UsageError, match="id"):
        index.add(2**32 - 1, b"\x00" * 32)
    with pytest.raises(UsageError, match="ids"):
        index.add_many([-5], [b"\x00" * 32])
    with pytest.raises(UsageError, match="256"):
        PDQIndex(table_widths=[24] * 11)
    with pytest.raises(UsageError, match="between"):
        PDQIndex(table_widths=[30] * 2)
    with pytest.raises(UsageError, match="ids but"):
        index.add_many([1, 2], [b"\x00" * 32])
    with pytest.raises(UsageError, match="mode"):
        index.search(b"\x00" * 32, mode="approximate")
    assert index.remove(12345) is False and 12345 not in index and "x" not in index
