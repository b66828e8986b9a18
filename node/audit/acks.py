"""The auditor's view of acknowledgements: from a helpline's log and its platforms'
logs alone, how long each platform took to acknowledge the helpline's entries, which
withdrawals it never acknowledged, and which of its acknowledgements name a tree the
helpline never had (spec/parts/acknowledgements.md §6). No I/O: the logs were
downloaded and checked (node/audit/check.py) by node/audit/run.py, the platforms'
before the helpline's, so every tree a platform acknowledged must be in the
helpline's log as read.

For each platform, each acknowledgement of the helpline in its log (in log order):
  - its cosignature was checked by audit_log (violation `acknowledgement` there);
  - the tree it names must be a prefix of the helpline's verified tree: same root for
    the first N entries (else violation `acknowledgement` and an evidence file,
    node/witness/ack_evidence.py), and N no larger than the helpline's size (else
    violation without a file: the checkpoint read cannot prove it alone);
  - the publication cosignature it carries, checked with the helpline's
    acknowledgement key, gives the time the helpline published that tree.

Publication times come only from those cosignatures (the helpline's log holds no
time); for an entry, the earliest-size tree holding it whose publication time some
platform carried. If every platform skipped the first checkpoint holding an entry,
that is a later one, and the latency shown is a lower bound (it says so: `bound`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from node.witness.ack_evidence import build_ack_evidence
from protocol.acknowledgements import Timeline, ack_time, is_valid_acknowledgement, latencies, summarize
from protocol.entries import KIND_SUBMISSION, KIND_WITHDRAWAL, Acknowledgement, decode_entry
from protocol.errors import ProtocolError
from protocol.merkle import range_hash
from protocol.tiles import TileNodes
from protocol.tlogproof import build_proofs


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class AckAudit:
    report: dict
    evidence: list[dict] = field(default_factory=list)


def audit_acknowledgements(helpline, platforms, ack_vkey: str | None, now: float) -> AckAudit:
    """`helpline` and `platforms` are node.audit.run.CheckedLog; `ack_vkey` the
    helpline's acknowledgement key (None: publication times cannot be checked)."""
    from protocol.acknowledgements import verify_publication

    h = helpline.result
    h_nodes = TileNodes(h.size, helpline.tiles) if h.tiles_verified and h.signed_by else None
    kinds = [data[1] if len(data) > 1 else 0 for data in h.entries]
    submissions = [i for i, k in enumerate(kinds) if k == KIND_SUBMISSION]
    withdrawals = [i for i, k in enumerate(kinds) if k == KIND_WITHDRAWAL]
    out = AckAudit({"helpline": h.origin, "acknowledgement_key": ack_vkey, "platforms": []})
    published_points: dict[int, float] = {}
    per_platform = []
    for platform in platforms:
        p = platform.result
        trusted = p.tiles_verified and bool(p.signed_by)
        steps: list[tuple[int, float]] = []
        problems = {"false": 0, "unverified_publication": 0}
        for index, data in enumerate(p.entries if trusted else ()):
            if len(data) < 2 or data[1] != 5:
                continue
            try:
                ack = decode_entry(data)
            except ProtocolError:
                continue  # reported by audit_log
            if not isinstance(ack, Acknowledgement) or ack.origin != h.origin \
                    or not is_valid_acknowledgement(ack, p.origin):
                continue
            if h_nodes is None:
                continue
            if ack.size > h.size:
                problems["false"] += 1
                p.violation("acknowledgement", f"acknowledgement at index {index} names a tree of {ack.size} entries "
                                               f"of {h.origin}, whose log read after it has only {h.size}", index)
                continue
            if range_hash(0, ack.size, h_nodes) != ack.root_hash:
                problems["false"] += 1
                p.violation("acknowledgement", f"acknowledgement at index {index} names a tree of {ack.size} entries "
                                               f"of {h.origin} that this log never had (another root)", index)
                doc = _evidence(helpline, platform, h_nodes, index, ack)
                if doc is not None:
                    out.evidence.append(doc)
                continue
            steps.append((ack.size, ack_time(ack)))
            if ack.publication is not None and ack_vkey:
                try:
                    t = verify_publication(ack, ack_vkey)
                    published_points[ack.size] = min(t, published_points.get(ack.size, t))
                except ProtocolError:
                    problems["unverified_publication"] += 1
        per_platform.append((platform, steps, problems))

    published = Timeline.of(sorted(published_points.items()))
    for platform, steps, problems in per_platform:
        p = platform.result
        acked = Timeline.of(steps)
        entry: dict = {"url": platform.url, "origin": p.origin, "ok": p.ok,
                       "acknowledgements": len(steps), "acknowledged_size": acked.largest,
                       "false_acknowledgements": problems["false"],
                       "publication_times_not_verified": problems["unverified_publication"]}
        for name, indices in (("submissions", submissions), ("withdrawals", withdrawals)):
            items = latencies(indices, published, acked)
            summary = summarize(items, now)
            if "pending_since" in summary:
                summary["pending_since"] = _iso(summary["pending_since"])
            summary["publication_unknown"] = sum(1 for x in items if x.published is None)
            entry[name] = summary
        entry["unacknowledged_withdrawals"] = [
            {"index": i, "published": _iso(published.covered_at(i))} for i in withdrawals if acked.covered_at(i) is None]
        out.report["platforms"].append(entry)
    out.report["bound"] = ("latencies are measured from the publication of the first checkpoint holding an entry "
                           "among those a platform acknowledged with the helpline's publication time; when every "
                           "platform skipped the very first one, the figure is a lower bound")
    return out


def _evidence(helpline, platform, h_nodes: TileNodes, index: int, ack: Acknowledgement) -> dict | None:
    p = platform.result
    try:
        p_nodes = TileNodes(p.size, platform.tiles)
        proof = build_proofs(p.note, {index: p.entries[index]}, p_nodes).to_bytes()
        return build_ack_evidence(helpline.vkey, helpline.note, helpline.result.size, h_nodes, ack, p.origin,
                                  platform.vkey, proof, [f"acknowledgement audited at {platform.url}",
                                                         f"log audited at {helpline.url}"])
    except ProtocolError:
        return None
