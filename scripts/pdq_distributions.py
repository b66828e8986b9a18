"""Synthetic PDQ fingerprints shaped like three situations a platform's index meets.

Used by scripts/bench_match.py (figures) and tests/test_pdq_index_distributions.py
(exactness against brute force). Fingerprints are n x 32 uint8 arrays; bit i of a
fingerprint is bit (i mod 8), least significant first, of byte i div 8, as in
spec/parts/matching.md.

- `uniform`: every bit an independent fair coin. The easiest case for multi-index
  hashing: every table key is uniform, so every bucket holds about as many items.
- `correlated`: like real PDQ hashes, whose bits are signs of DCT coefficients of one
  picture and so depend on each other. Each fingerprint comes from a latent vector
  z ~ N(0, I_16): bit i = [sqrt(s) w_i.z + sqrt(1 - s) e_i > theta_i] with unit vectors
  w_i, independent noise e_i ~ N(0, 1), strength s = 0.7 and small per-bit offsets
  theta_i (some bits are set more often than others). Distances between unrelated
  fingerprints then spread twice as wide as for uniform ones (standard deviation about
  16 bits instead of 8), and table keys are far from uniform. On top of that, 5 % of
  the fingerprints sit in near-duplicate clusters of about 100 (Poisson sizes), each
  member within Poisson(5) bits (at most 20) of its cluster's original: the same viral
  image submitted by many people, re-encoded each time.
- `cluster_attack`: uniform fingerprints, then `copies` near-copies of one
  fingerprint C with exactly `flips` bits flipped at random each (500,000 and 6 by
  default): what a compromised helpline could publish in a minute through its own
  admin API to slow every platform that follows it. They take the last ids, as the
  last entries a log appended.

Every generator is deterministic in its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FINGERPRINT_BYTES = 32
LATENT_DIMENSIONS = 16
LATENT_STRENGTH = 0.7
DUPLICATE_SHARE = 0.05
DUPLICATE_CLUSTER_SIZE = 100
DUPLICATE_FLIPS = 5
ATTACK_COPIES = 500_000
ATTACK_FLIPS = 6
_CHUNK = 1 << 18

DISTRIBUTIONS = ("uniform", "correlated", "cluster-attack")


@dataclass
class Dataset:
    """The fingerprints, and the cluster centres queries can aim at."""

    fingerprints: np.ndarray                  # n x 32 uint8
    centres: np.ndarray                       # k x 32 uint8: cluster originals (may be empty)
    cluster_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    model: LatentModel | None = None          # to draw unrelated queries of the same kind

    def unrelated(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Fresh fingerprints of the same kind, not planted anywhere."""
        if self.model is not None:
            return self.model.sample(rng, n)
        return uniform(rng, n)


def uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, FINGERPRINT_BYTES), dtype=np.uint8)


def flip_random_bits(rng: np.random.Generator, fingerprints: np.ndarray, counts) -> np.ndarray:
    """Each row with `counts[i]` distinct bits flipped at random (vectorised: the bits
    with the smallest random keys are flipped)."""
    fingerprints = np.atleast_2d(fingerprints)
    counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), (len(fingerprints),))
    out = np.empty_like(fingerprints)
    for start in range(0, len(fingerprints), _CHUNK):
        stop = min(start + _CHUNK, len(fingerprints))
        keys = rng.random((stop - start, 256), dtype=np.float32)
        order = np.argsort(keys, axis=1)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(256)[None, :], axis=1)
        mask = ranks < counts[start:stop, None]
        out[start:stop] = fingerprints[start:stop] ^ np.packbits(mask, axis=1, bitorder="little")
    return out


class LatentModel:
    """Correlated bits: each bit is the sign of a noisy projection of a shared latent vector."""

    def __init__(self, seed: int, dimensions: int = LATENT_DIMENSIONS, strength: float = LATENT_STRENGTH,
                 offset: float = 0.2):
        rng = np.random.default_rng(seed)
        weights = rng.standard_normal((256, dimensions)).astype(np.float32)
        self.weights = weights / np.linalg.norm(weights, axis=1, keepdims=True)
        self.offsets = (rng.standard_normal(256) * offset).astype(np.float32)
        self.strength = strength

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.empty((n, FINGERPRINT_BYTES), dtype=np.uint8)
        a, b = np.float32(np.sqrt(self.strength)), np.float32(np.sqrt(1 - self.strength))
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            latent = rng.standard_normal((m, self.weights.shape[1]), dtype=np.float32)
            values = a * (latent @ self.weights.T) + b * rng.standard_normal((m, 256), dtype=np.float32)
            out[start:start + m] = np.packbits(values > self.offsets, axis=1, bitorder="little")
        return out


def correlated(n: int, seed: int = 1, *, duplicate_share: float = DUPLICATE_SHARE,
               cluster_size: int = DUPLICATE_CLUSTER_SIZE) -> Dataset:
    rng = np.random.default_rng(seed)
    model = LatentModel(seed + 1000)
    fingerprints = model.sample(rng, n)
    in_clusters = int(n * duplicate_share)
    if in_clusters < 2:
        return Dataset(fingerprints, np.zeros((0, FINGERPRINT_BYTES), dtype=np.uint8), model=model)
    k = max(1, in_clusters // cluster_size)
    centres = model.sample(rng, k)
    sizes = np.maximum(1, rng.poisson(cluster_size, k))
    owner = np.repeat(np.arange(k), sizes)[:in_clusters]
    sizes = np.bincount(owner, minlength=k)
    positions = rng.choice(n, len(owner), replace=False)
    flips = np.minimum(rng.poisson(DUPLICATE_FLIPS, len(owner)), 20)
    fingerprints[positions] = flip_random_bits(rng, centres[owner], flips)
    return Dataset(fingerprints, centres, sizes, model)


def cluster_attack(n: int, seed: int = 1, *, copies: int = ATTACK_COPIES, flips: int = ATTACK_FLIPS) -> Dataset:
    rng = np.random.default_rng(seed)
    copies = min(copies, n)
    fingerprints = uniform(rng, n)
    centre = uniform(rng, 1)
    fingerprints[n - copies:] = flip_random_bits(rng, np.repeat(centre, copies, axis=0), flips)
    return Dataset(fingerprints, centre, np.array([copies]))


def make(distribution: str, n: int, seed: int = 1) -> Dataset:
    if distribution == "uniform":
        rng = np.random.default_rng(seed)
        return Dataset(uniform(rng, n), np.zeros((0, FINGERPRINT_BYTES), dtype=np.uint8))
    if distribution == "correlated":
        return correlated(n, seed)
    if distribution == "cluster-attack":
        return cluster_attack(n, seed, copies=min(ATTACK_COPIES, n // 2))
    raise ValueError(f"unknown distribution {distribution!r} (known: {', '.join(DISTRIBUTIONS)})")


def hamming_matrix(queries: np.ndarray, fingerprints: np.ndarray) -> np.ndarray:
    """Distances of every query to every fingerprint (brute force, for tests)."""
    table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint16)
    out = np.empty((len(queries), len(fingerprints)), dtype=np.uint16)
    for i, query in enumerate(queries):
        out[i] = table[fingerprints ^ query].sum(axis=1)
    return out
