"""`ncii-node audit URL --vkey VKEY`: download a whole log, check it, compare it with
what was seen before and with what peers have seen, write the report.

Order of work:
  1. fetch /checkpoint, then every tile and entry bundle of its size (bounded reads,
     signed with --request-key when the log is restricted: node/follow/client.py);
  2. node.audit.check.audit_log: tiles, bundles, entries, invariants, signature;
  3. --state DIR: the checkpoint this auditor verified last time for this origin must
     be a prefix of the new tree (its root equals the root of the new tree's first
     `size` leaves, read from the verified tiles); if not, an evidence file is written
     (node/witness/evidence.py) and the state keeps the OLD checkpoint -- nothing
     verified is forgotten. Otherwise the new checkpoint becomes the state, and
     DIR/seen.json is rewritten in the shape of GET /witness/seen so that the
     auditor's view can be shared like a node's;
  4. --peer URL: each peer's GET /witness/seen is read and every checkpoint it lists
     for this origin is compared with ours (fetching and verifying the log's tiles at
     the peer's size when it is larger); an inconsistency is a split view: evidence;
  5. the report (text or --json) and the HTML page with the chart.

The exit status is 0 when nothing is wrong, 1 on any violation, 2 when the audit
could not be done (the checkpoint could not be fetched, bad arguments).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.audit import report as report_mod
from node.audit.check import AuditResult, audit_log
from node.witness import evidence as evidence_mod
from node.witness.seen import MAX_SEEN_BYTES, compare_views, notes_for_origin
from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.errors import ProtocolError
from protocol.merkle import EMPTY_ROOT
from protocol.note import Verifier, parse_note
from protocol.tiles import TileNodes, bundles_for_size, tiles_for_size, verify_tiles

CONCURRENCY = 16
STATE_VERSION = 1


class AuditError(Exception):
    """The audit could not be carried out (exit status 2)."""


@dataclass
class AuditOptions:
    url: str
    vkey: str
    state_dir: Path | None = None
    request_key: Path | None = None
    peers: list[str] = field(default_factory=list)
    html_path: Path | None = None
    timeout: float = 30.0
    policy: object | None = None       # protocol.policy.Policy: the cosignatures the checkpoint needs
    platforms: list[tuple[str, str]] = field(default_factory=list)  # (URL, log vkey) of the helpline's platforms
    ack_vkey: str | None = None        # the audited log's acknowledgement key (default: its /node.json)


@dataclass
class AuditOutcome:
    result: AuditResult
    report: dict
    evidence_files: list[str]


def _safe_name(origin: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", origin)[:60]
    return f"{slug}-{hashlib.sha256(origin.encode()).hexdigest()[:8]}"


def load_request_signer(path: Path | None):
    """The RFC 9421 request signer of a node's request key file, or None."""
    if path is None:
        return None
    from node.readaccess import load_request_signer
    from protocol.errors import UsageError

    try:
        return load_request_signer(path)
    except UsageError as exc:
        raise AuditError(str(exc)) from None


async def _fetch_all(client, items, fetch_one, result: AuditResult) -> dict:
    """Fetch every item with bounded concurrency; failures become 'unavailable' violations."""
    from node.follow.client import FetchError

    out: dict = {}
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(item):
        async with semaphore:
            try:
                out[item] = await fetch_one(item)
            except FetchError as exc:
                result.violation("unavailable", f"could not fetch {item.path()}: {exc}")

    await asyncio.gather(*(one(i) for i in items))
    return out


async def fetch_verified_tiles(client, size: int, root: bytes) -> TileNodes | None:
    """The tiles of the log's tree at `size`, fetched and verified against `root`."""
    from node.follow.client import FetchError

    tiles = {}
    try:
        for tile in tiles_for_size(size):
            tiles[tile] = await client.tile(tile)
        verify_tiles(size, root, tiles)
    except (FetchError, ProtocolError):
        return None
    return TileNodes(size, tiles)


def _load_state(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuditError(f"the state file {path} is unreadable ({exc}); move it away to start afresh") from None
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION or not isinstance(doc.get("note"), str):
        raise AuditError(f"the state file {path} is not an audit state file")
    return doc


def _write_json(path: Path, doc: dict) -> None:
    from node.datadir import write_atomic

    write_atomic(path, (json.dumps(doc, indent=1) + "\n").encode(), mode=0o644)


def _write_evidence(doc: dict, directory: Path) -> str:
    text = evidence_mod.dumps(doc)
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = directory / f"evidence-{_safe_name(doc['origin'])}-{digest}.json"
    path.write_text(text)
    return str(path)


@dataclass
class CheckedLog:
    url: str
    vkey: str
    note: bytes
    tiles: dict
    result: AuditResult


async def download_and_check(client, vkey: str, url: str) -> "CheckedLog":
    """Fetch a log's checkpoint, every tile and bundle of its size, and run the checks
    (node.audit.check.audit_log). Raises AuditError when the log cannot be read at all."""
    from node.follow.client import FetchError

    try:
        Verifier.from_vkey(vkey)
    except ProtocolError as exc:
        raise AuditError(f"the key given for {url}: {exc}") from None
    try:
        note = await client.checkpoint()
    except FetchError as exc:
        raise AuditError(f"cannot fetch the checkpoint of {url}: {exc}") from None
    result = AuditResult(note=note)
    try:
        cp = Checkpoint.parse(parse_note(note).text)
    except ProtocolError:
        cp = None
    tiles, bundles = {}, {}
    if cp is not None:
        tiles = await _fetch_all(client, tiles_for_size(cp.size), client.tile, result)
        bundles = await _fetch_all(client, bundles_for_size(cp.size), client.bundle, result)
    fetch_problems = result.violations
    if any("HTTP 401" in v.message or "HTTP 403" in v.message for v in fetch_problems):
        # Not the log's fault: we may not read it. That is "could not audit", not a violation.
        raise AuditError(
            f"the log at {url} is read by registered readers only, and its tiles were refused: run the audit "
            "with --request-key FILE, the request key file (DIR/keys/request.key) of a node that the log's "
            "operator registered with `ncii-node readers add`"
            + ("" if client.signer is None else " (the key given is not registered there)"))
    result = await asyncio.to_thread(audit_log, note, vkey, tiles, bundles)
    if fetch_problems:  # the specific fetch failures replace the check's summary of them
        result.violations[:] = fetch_problems + [v for v in result.violations if v.kind != "unavailable"]
    return CheckedLog(url, vkey, note, tiles, result)


async def run_audit(options: AuditOptions) -> AuditOutcome:
    from node.follow.client import PeerClient

    try:
        Verifier.from_vkey(options.vkey)
    except ProtocolError as exc:
        raise AuditError(f"--vkey: {exc}") from None
    signer = load_request_signer(options.request_key)
    evidence_dir = options.state_dir or Path.cwd()
    evidence_files: list[str] = []
    consistency: dict = {}
    peers: list[dict] = []

    # The platforms' logs first: a log only grows, so every tree they acknowledged must
    # be in the helpline's log as read afterwards (node/audit/acks.py).
    platforms = []
    for url, vkey in options.platforms:
        async with PeerClient(url, signer=signer, timeout=options.timeout) as platform_client:
            platforms.append(await download_and_check(platform_client, vkey, url))

    async with PeerClient(options.url, signer=signer, timeout=options.timeout) as client:
        checked = await download_and_check(client, options.vkey, options.url)
        note, tiles, result = checked.note, checked.tiles, checked.result
        trusted = result.tiles_verified and bool(result.signed_by)
        acknowledgements = None
        if platforms:
            acknowledgements = await _acknowledgements(client, checked, platforms, options, evidence_dir,
                                                       evidence_files)
        nodes = TileNodes(result.size, tiles) if trusted else None
        witnesses = _check_witnesses(options.policy, note, result) if options.policy is not None else None

        # Consistency with the checkpoint verified last time.
        state_path = None
        if options.state_dir is not None:
            options.state_dir.mkdir(parents=True, exist_ok=True)
            if result.origin:
                state_path = options.state_dir / f"{_safe_name(result.origin)}.json"
        state = _load_state(state_path) if state_path else None
        if state is not None and trusted:
            old_note = state["note"].encode()
            old_vkey = state.get("vkey", options.vkey)
            try:
                old_cp, _ = open_checkpoint(old_note, [Verifier.from_vkey(old_vkey)], origin=result.origin)
            except ProtocolError as exc:
                raise AuditError(f"the state file {state_path} holds a checkpoint that does not verify: {exc}")
            consistency = {"previous_size": old_cp.size, "size": result.size}
            if old_cp.size > result.size:
                consistency.update(status="inconsistent", message=f"the log shrank from {old_cp.size} to {result.size}")
                result.violation("consistency", f"the log now serves a checkpoint of size {result.size}, smaller "
                                                f"than the {old_cp.size} verified at the last audit")
                older_nodes = await fetch_verified_tiles(client, old_cp.size, old_cp.root_hash)
                if older_nodes is not None and old_vkey == result.signed_by:
                    doc = evidence_mod.check_pair(old_vkey, old_note, note, older_nodes,
                                                  ["previous audit", options.url])
                    if doc is not None:
                        evidence_files.append(_write_evidence(doc, evidence_dir))
            else:
                prefix = nodes.range_hash(0, old_cp.size) if old_cp.size else EMPTY_ROOT
                doc = None
                if prefix != old_cp.root_hash and old_vkey == result.signed_by:
                    doc = evidence_mod.check_pair(old_vkey, old_note, note, nodes, ["previous audit", options.url])
                if prefix != old_cp.root_hash:
                    consistency.update(status="inconsistent",
                                       message=f"the tree of size {result.size} does not extend the checkpoint "
                                               f"of size {old_cp.size} verified at the last audit")
                    result.violation("consistency", consistency["message"])
                    if doc is not None:
                        evidence_files.append(_write_evidence(doc, evidence_dir))
                else:
                    consistency.update(status="consistent", message=f"extends size {old_cp.size}")

        # Split views: what peers have seen of this origin.
        for peer_url in options.peers:
            peers.append(await _compare_with_peer(peer_url, result, note, nodes, client, evidence_dir,
                                                  evidence_files, options.timeout))

    if state_path is not None and trusted and consistency.get("status") != "inconsistent":
        _write_json(state_path, {"version": STATE_VERSION, "origin": result.origin, "vkey": result.signed_by,
                                 "url": options.url, "note": note.decode("utf-8"), "audited_at": int(time.time())})
        _write_seen(options.state_dir)

    html_path = options.html_path
    if html_path is None:
        html_path = (options.state_dir / f"report-{_safe_name(result.origin or 'log')}.html"
                     if options.state_dir else Path.cwd() / "ncii-audit-report.html")
    report = report_mod.to_json(result, url=options.url, consistency=consistency,
                                evidence_files=evidence_files, html_path=str(html_path), peers=peers,
                                witnesses=witnesses, acknowledgements=acknowledgements)
    if acknowledgements is not None and any(not p.result.ok for p in platforms):
        report["ok"] = False
    Path(html_path).write_text(report_mod.to_html(report, result), encoding="utf-8")
    return AuditOutcome(result, report, evidence_files)


async def _acknowledgements(client, helpline: CheckedLog, platforms: list[CheckedLog], options: AuditOptions,
                            evidence_dir: Path, evidence_files: list[str]) -> dict:
    """The acknowledgements part of the report (node/audit/acks.py), with each
    platform's own audit; evidence files written like the others."""
    from node.audit.acks import audit_acknowledgements
    from node.follow.client import FetchError

    ack_vkey = options.ack_vkey
    source = "--ack-key"
    if ack_vkey is None:
        source = f"{options.url}/node.json (as the server gave it; a wrong key only fails the checks)"
        try:
            ack_vkey = json.loads(await client.get("node.json", max_bytes=64 * 1024)).get("acknowledgement_key")
        except (FetchError, ValueError, AttributeError):
            ack_vkey = None
    audited = await asyncio.to_thread(audit_acknowledgements, helpline, platforms, ack_vkey, time.time())
    for doc in audited.evidence:
        evidence_files.append(_write_evidence(doc, evidence_dir))
    audited.report["acknowledgement_key_from"] = source if ack_vkey else None
    for entry, platform in zip(audited.report["platforms"], platforms):
        entry["violations"] = [v.to_json() for v in platform.result.violations]
    return audited.report


def _check_witnesses(policy, note: bytes, result: AuditResult) -> dict:
    """The policy's quorum on the audited checkpoint (and, if it lists logs, a
    signature by one of them): violation `witnesses` when not met."""
    import datetime

    from node.witness.policy import enforce, witness_label

    report = {"required": policy.describe(), "met": False, "cosigned": {}}
    if not result.signed_by:
        report["problem"] = "the checkpoint is not validly signed: its cosignatures prove nothing"
        return report
    try:
        cosigned = enforce(policy, note, result.origin)
    except ProtocolError as exc:
        report["problem"] = str(exc)
        result.violation("witnesses", f"the checkpoint does not carry the cosignatures the policy needs: {exc}")
        return report
    report["met"] = True
    report["cosigned"] = {witness_label(policy, name): datetime.datetime.fromtimestamp(
        t, datetime.timezone.utc).isoformat() for name, t in sorted(cosigned.items())}
    return report


async def _compare_with_peer(peer_url, result, note, nodes, client, evidence_dir, evidence_files, timeout) -> dict:
    from node.follow.client import FetchError, PeerClient

    if nodes is None:
        return {"url": peer_url, "status": "skipped: our own view did not verify"}
    try:
        # Signed with --request-key when given: a node serves /witness/seen only to its
        # registered readers unless it is public_read.
        async with PeerClient(peer_url, signer=client.signer, timeout=timeout) as peer:
            document = await peer.get("witness/seen", max_bytes=MAX_SEEN_BYTES)
    except FetchError as exc:
        return {"url": peer_url, "status": f"unreachable: {exc}"}

    async def tree_nodes(size: int, root: bytes):
        if size == result.size:
            return nodes
        return await fetch_verified_tiles(client, size, root)

    statuses = []
    for theirs in notes_for_origin(document, result.origin):
        comparison = await compare_views(result.signed_by, note, theirs, tree_nodes, ["this audit", peer_url])
        if comparison.evidence is not None:
            path = _write_evidence(comparison.evidence, evidence_dir)
            evidence_files.append(path)
            result.violation("split-view", f"peer {peer_url} has seen a checkpoint of this log that is inconsistent "
                                           f"with ours; evidence in {path}")
            statuses.append("SPLIT VIEW")
        elif comparison.problem:
            statuses.append(comparison.problem)
        else:
            statuses.append("consistent")
    return {"url": peer_url, "status": "; ".join(statuses) or "has not seen this log"}


def _write_seen(state_dir: Path) -> None:
    """DIR/seen.json: every origin this auditor verified, shaped like GET /witness/seen."""
    checkpoints = []
    for path in sorted(state_dir.glob("*.json")):
        if path.name == "seen.json" or path.name.startswith("evidence-"):
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("version") == STATE_VERSION:
            try:
                size = Checkpoint.parse(parse_note(doc["note"].encode()).text).size
            except (ProtocolError, KeyError, AttributeError):
                continue
            checkpoints.append({"origin": doc["origin"], "size": size, "note": doc["note"],
                                "source": "auditor", "seen_at": doc.get("audited_at", 0)})
    _write_json(state_dir / "seen.json", {"node": "auditor", "checkpoints": checkpoints})
