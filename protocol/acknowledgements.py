"""Acknowledgements: what a node says it has applied, as C2SP tlog-cosignatures.

An acknowledgement entry (protocol.entries.Acknowledgement, kind 5) carries a
C2SP tlog-cosignature/v1 (Ed25519) by the publishing node's *acknowledgement key*
over a checkpoint of a log it follows:

    cosigner name   the origin of the log that publishes the entry (the acknowledger)
    key             the entry's public_key (type 0x04, so its key ID differs from the
                    log key's even under the same name)
    message         "cosignature/v1\\ntime <timestamp>\\n" <origin>\\n<size>\\n<base64 root>\\n

Base semantics (C2SP): as of `timestamp`, the largest consistent tree the cosigner
had observed for that origin is (size, root). Additional statement (ours, allowed by
C2SP tlog-cosignature "Additional statements", hence a key of its own): the
acknowledger had verified that tree and applied every entry of it -- a platform
matches its submissions and no longer matches what its withdrawals name.

A node also cosigns each checkpoint of its own log when it publishes it, with the
same key (the *publication cosignature*: "as of T, my largest tree is this one" --
it had just published it). The line rides on the served checkpoint; an acknowledger
copies it into its acknowledgement (`publication_of`), so that the acknowledger's log
holds both times, each signed by the party that knows it. The helpline's own log
holds no time. spec/parts/acknowledgements.md is the normative text.

Since only the acknowledged checkpoint's three lines are signed, an acknowledgement
can be lifted out of the log and put back on that checkpoint as an ordinary signature
line (`cosignature_line`): a person's receipt carries it, and any C2SP verifier with
the key checks it.

`Timeline` answers "when was entry i first covered?" for a series of (size, time)
points: when a log first published a tree holding entry i, when a platform first
acknowledged one. Both the helpline (case status, statistics) and the auditor use it.

Pure: no clock, no I/O. Times are POSIX seconds as floats (the entry's timestamp plus
its milliseconds).
"""

from __future__ import annotations

import bisect
import math
import struct
from dataclasses import dataclass
from typing import Iterable, Sequence

from protocol.checkpoint import Checkpoint
from protocol.cosignature import (
    MAX_TIMESTAMP,
    PAYLOAD_SIZE,
    TIMESTAMP_SIZE,
    CosignatureSigner,
    CosignatureVerifier,
    cosigned_message,
)
from protocol.entries import Acknowledgement, Publication
from protocol.errors import CosignatureError, UsageError
from protocol.note import (
    SIGNATURE_TYPE_COSIGNATURE_V1,
    Note,
    NoteSignature,
    encode_vkey,
    key_id_for,
    parse_signature_text,
)


def acknowledge(signer: CosignatureSigner, checkpoint: Checkpoint, time_ms: int,
                publication: Publication | None = None) -> Acknowledgement:
    """The acknowledgement of `checkpoint` at `time_ms` (POSIX milliseconds), signed by
    the acknowledgement key `signer`, whose name must be the acknowledging log's origin;
    `publication` is the acknowledged log's own cosignature found on the checkpoint."""
    if checkpoint.extensions:
        raise UsageError("an acknowledgement carries origin, size and root only; this checkpoint has "
                         "extension lines")
    if checkpoint.size < 1:
        raise UsageError("the empty tree holds nothing to acknowledge")
    if isinstance(time_ms, bool) or not isinstance(time_ms, int) or time_ms < 0:
        raise UsageError(f"time_ms must be a non-negative int, not {time_ms!r}")
    timestamp, milliseconds = divmod(time_ms, 1000)
    payload = parse_signature_text(signer.cosign(checkpoint.to_text(), timestamp)).signature
    return Acknowledgement(checkpoint.origin, checkpoint.size, checkpoint.root_hash, timestamp, milliseconds,
                           signer.verifier().public_key, payload[TIMESTAMP_SIZE:], publication)


def publication_of(note: Note) -> Publication | None:
    """The publication cosignature on a checkpoint note: a signature line named like the
    checkpoint's origin and shaped like an Ed25519 cosignature (key ID, timestamp,
    signature; a log key's own line is shorter). Not verified here (the acknowledger
    need not know that key; an auditor checks it with `verify_publication`). The first
    such line, if several (a witness named like the log)."""
    origin = note.text.split("\n", 1)[0]
    for sig in note.signatures:
        if sig.name == origin and len(sig.signature) == PAYLOAD_SIZE:
            (timestamp,) = struct.unpack(">Q", sig.signature[:TIMESTAMP_SIZE])
            if timestamp <= MAX_TIMESTAMP:
                return Publication(sig.key_id, timestamp, sig.signature[TIMESTAMP_SIZE:])
    return None


def publication_line(ack: Acknowledgement) -> str | None:
    """The acknowledged log's publication cosignature as a signature line for the
    acknowledged checkpoint, or None."""
    p = ack.publication
    if p is None:
        return None
    return NoteSignature(ack.origin, p.key_id, struct.pack(">Q", p.timestamp) + p.signature).to_line()


def verify_publication(ack: Acknowledgement, vkey: str) -> int:
    """Check the publication cosignature an acknowledgement carries against the
    acknowledged log's acknowledgement key `vkey`; returns its timestamp. Raises
    CosignatureError (none, another key, or not valid)."""
    line = publication_line(ack)
    if line is None:
        raise CosignatureError(f"the acknowledgement of {ack.origin} size {ack.size} carries no publication time")
    return CosignatureVerifier.from_vkey(vkey).verify_line(acknowledged_checkpoint(ack).to_text(), line)


def acknowledged_checkpoint(ack: Acknowledgement) -> Checkpoint:
    """The checkpoint the acknowledgement cosigns (its three lines)."""
    return Checkpoint(ack.origin, ack.size, ack.root_hash)


def ack_time(ack: Acknowledgement) -> float:
    """When, by the acknowledger's clock, it had applied the tree: seconds."""
    return ack.timestamp + ack.milliseconds / 1000


def ack_vkey(ack: Acknowledgement, cosigner_name: str) -> str:
    """The verifier key (C2SP vkey, type 0x04) of the key that signed `ack`, for the
    acknowledger whose log origin is `cosigner_name`."""
    return encode_vkey(cosigner_name, SIGNATURE_TYPE_COSIGNATURE_V1, ack.public_key)


def verify_acknowledgement(ack: Acknowledgement, cosigner_name: str) -> None:
    """Check the cosignature of an acknowledgement published in the log `cosigner_name`.
    Raises CosignatureError (or KeyFormatError for a key that is no Ed25519 point)."""
    verifier = CosignatureVerifier(cosigner_name, ack.public_key)
    payload = struct.pack(">Q", ack.timestamp) + ack.signature
    verifier.check_payload(acknowledged_checkpoint(ack).to_text().encode("ascii"), payload)


def is_valid_acknowledgement(ack: Acknowledgement, cosigner_name: str) -> bool:
    try:
        verify_acknowledgement(ack, cosigner_name)
    except (CosignatureError, ValueError):
        return False
    return True


def cosignature_line(ack: Acknowledgement, cosigner_name: str) -> str:
    """The acknowledgement as a signature line (no final newline) for its checkpoint's
    note: `— <cosigner name> base64(key ID || timestamp || signature)`."""
    key_id = key_id_for(cosigner_name, SIGNATURE_TYPE_COSIGNATURE_V1, ack.public_key)
    return NoteSignature(cosigner_name, key_id, struct.pack(">Q", ack.timestamp) + ack.signature).to_line()


def signed_message(ack: Acknowledgement) -> bytes:
    """The exact bytes the cosignature signs (for documentation and vectors)."""
    return cosigned_message(acknowledged_checkpoint(ack).to_text().encode("ascii"), ack.timestamp)


# --------------------------------------------------------------------------------------
# When was an entry first covered?


@dataclass(frozen=True)
class Timeline:
    """When was entry i first covered? Built from points (size, time) in the order
    they were stated -- "at `time`, a tree of `size` entries was published" (a log's
    publication cosignatures, by size) or "... was applied" (an acknowledger's
    acknowledgements, in its log's order) -- `covered_at(i)`
    is the time of the FIRST point, in that order, whose tree holds entry i (size > i),
    or None. Only points that grow the size can be first for some entry, so they
    alone are kept (an honest log's sizes only grow anyway)."""

    sizes: tuple[int, ...]
    times: tuple[float, ...]

    @classmethod
    def of(cls, points: Iterable[tuple[int, float]]) -> "Timeline":
        sizes: list[int] = []
        times: list[float] = []
        for size, at in points:
            if not sizes or size > sizes[-1]:
                sizes.append(size)
                times.append(at)
        return cls(tuple(sizes), tuple(times))

    def covered_at(self, index: int) -> float | None:
        k = bisect.bisect_right(self.sizes, index)
        return self.times[k] if k < len(self.sizes) else None

    @property
    def largest(self) -> int:
        """The largest tree size of any point (0 without points)."""
        return self.sizes[-1] if self.sizes else 0


@dataclass(frozen=True)
class Latency:
    """Per entry -- or per `count` entries that share both times (entries first
    published in one checkpoint) -- published at, acknowledged at (None: not yet)."""

    index: int
    published: float | None
    acknowledged: float | None
    count: int = 1

    @property
    def seconds(self) -> float | None:
        if self.published is None or self.acknowledged is None:
            return None
        return self.acknowledged - self.published


def latencies(indices: Iterable[int], published: Timeline, acknowledged: Timeline) -> list[Latency]:
    """For each entry index: when its log first published it and when the acknowledger
    first acknowledged a tree holding it."""
    return [Latency(i, published.covered_at(i), acknowledged.covered_at(i)) for i in indices]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values (the value at rank ceil(p * n))."""
    if not sorted_values:
        raise UsageError("percentile of no values")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def weighted_percentile(sorted_pairs: Sequence[tuple[float, int]], fraction: float) -> float:
    """The nearest-rank percentile of values given with how many times each occurs,
    sorted by value: what `percentile` gives on the expanded list."""
    total = sum(n for _, n in sorted_pairs)
    if not total:
        raise UsageError("percentile of no values")
    rank, seen = max(1, math.ceil(fraction * total)), 0
    for value, n in sorted_pairs:
        seen += n
        if seen >= rank:
            return value
    return sorted_pairs[-1][0]


def summarize(items: Sequence[Latency], now: float | None = None) -> dict:
    """The distribution of acknowledgement latencies (seconds) of published entries
    (each item counting `count` entries): entries, acknowledged, pending (published,
    not acknowledged), p50, p90, p99, max; with `now`, how long the oldest pending
    entry has waited. A negative latency (an acknowledgement timed before the
    publication: clocks apart) counts as it is."""
    done = sorted((x.seconds, x.count) for x in items if x.seconds is not None)
    pending = [x for x in items if x.published is not None and x.acknowledged is None]
    out: dict = {"entries": sum(x.count for x in items), "acknowledged": sum(n for _, n in done),
                 "pending": sum(x.count for x in pending)}
    if done:
        out.update({name: round(weighted_percentile(done, p), 3) for name, p in (("p50", 0.5), ("p90", 0.9),
                                                                                  ("p99", 0.99))})
        out["max"] = round(done[-1][0], 3)
    if pending:
        oldest = min(x.published for x in pending)  # type: ignore[type-var]
        out["pending_since"] = oldest
        if now is not None:
            out["oldest_pending_seconds"] = round(now - oldest, 3)
    return out
