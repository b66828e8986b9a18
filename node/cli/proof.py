"""`ncii-node proof`: write an offline proof (C2SP tlog-proof) that entries are in a log.

    ncii-node proof --dir DIR INDEX [INDEX ...] [-o FILE] [--no-entry]
    ncii-node proof --url URL --vkey VKEY [--origin ORIGIN] [--request-key FILE] INDEX [...] [-o FILE]

With --dir: this node's own log, under the checkpoint that carries the most witness
cosignatures. With --url: any log this node may read (its request key registered
there when the log is restricted), under the checkpoint it serves. One index gives a
C2SP tlog-proof; several give our bundle of them under one checkpoint. The proof
carries the entries themselves (`extra`) unless --no-entry. Anyone can check it
offline with `ncii-node audit verify-proof FILE` (spec/parts/proofs.md).

Exit status: 0 written, 1 the proof cannot be made, 2 bad arguments.
"""

from __future__ import annotations

import sys

from node.cli._common import fail, reports_datadir_errors


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser("proof", help="write an offline proof (C2SP tlog-proof) of entries of a log",
                              description=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("indices", metavar="INDEX", type=int, nargs="+", help="entry indices (from 0)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dir", help="this node's data directory: prove entries of its own log")
    source.add_argument("--url", help="the URL prefix of a log to prove entries of")
    p.add_argument("--vkey", help="with --url: the log's verifier key (never the one the server presents)")
    p.add_argument("--origin", help="with --url: the log's origin, when its key is not named like it")
    p.add_argument("--request-key", metavar="FILE", help="with --url: a node's request key file "
                   "(DIR/keys/request.key) to read a restricted log")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the proof (default: standard output)")
    p.add_argument("--no-entry", action="store_true", help="leave the entries out (the verifier has them)")
    p.add_argument("--timeout", type=float, default=30.0, help="with --url: seconds per request (default 30)")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import asyncio
    from pathlib import Path

    from node.witness.proofs import ProofUnavailable, local_proofs, remote_proofs
    from protocol.checkpoint import Checkpoint
    from protocol.errors import ProtocolError
    from protocol.note import Verifier, parse_note

    try:
        if args.dir:
            if args.vkey or args.origin or args.request_key:
                return fail("--vkey, --origin and --request-key go with --url", 2)
            from node.datadir import DataDir

            proofs, candidate = local_proofs(DataDir(args.dir), args.indices, include_entries=not args.no_entry)
            carried = f"cosigned by {', '.join(candidate.witnesses)}" if candidate.witnesses else "no cosignature"
        else:
            if not args.vkey:
                return fail("--url needs --vkey VKEY, the log's verifier key obtained from its operator", 2)
            from node.audit.run import AuditError, load_request_signer

            try:
                signer = load_request_signer(Path(args.request_key) if args.request_key else None)
            except AuditError as exc:
                return fail(str(exc), 2)
            proofs = asyncio.run(remote_proofs(args.url.rstrip("/"), args.vkey.strip(), args.indices,
                                               origin=args.origin, signer=signer, timeout=args.timeout,
                                               include_entries=not args.no_entry))
            log_key = Verifier.from_vkey(args.vkey.strip())
            others = [s.name for s in parse_note(proofs.checkpoint).signatures
                      if (s.name, s.key_id) != (log_key.name, log_key.key_id)]
            carried = (f"{len(others)} other signature line(s), not checked here ({', '.join(others)})"
                       if others else "no cosignature")
    except ProofUnavailable as exc:
        return fail(str(exc))
    except ProtocolError as exc:
        return fail(f"--vkey: {exc}", 2)
    data = proofs.to_bytes()
    if args.output:
        from node.datadir import write_atomic

        write_atomic(Path(args.output), data, mode=0o644)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    cp = Checkpoint.parse(parse_note(proofs.checkpoint).text)
    print(f"proof of {len(proofs.proofs)} entr{'y' if len(proofs.proofs) == 1 else 'ies'} "
          f"({', '.join(str(p.index) for p in proofs.proofs)}) of {cp.origin} under its checkpoint of size "
          f"{cp.size}, {carried}; {len(data)} bytes"
          + (f" written to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


# -- `ncii-node audit verify-proof FILE` (registered by node/cli/audit.py) -------------------

WHAT_IT_PROVES = (
    "What this proves: the log signed a tree of {size} entries that holds these entries at these "
    "positions, and each witness listed saw that very tree at the time shown (by its own clock) and "
    "vouched that it extends everything it had seen of this log before. So these entries were in the "
    "log no later than {latest}, when the last of these witnesses had seen it.")
WHAT_IT_DOES_NOT = (
    "What it does not prove: when each entry was added before that time; that the log still shows the "
    "same tree today or to everyone (witnesses only make that hard to hide); who asked for an entry, or "
    "why; that any platform applied it.")


def _describe_entry(entry: bytes | None) -> str:
    from protocol.entries import decode_entry, entry_to_json
    from protocol.errors import ProtocolError

    if entry is None:
        return "(only its leaf hash was given)"
    try:
        view = entry_to_json(decode_entry(entry))
    except ProtocolError as exc:
        return f"({len(entry)} bytes that are not an ncii-node entry: {exc})"
    if view["kind"] == "submission":
        labels = f", labels {', '.join(view['labels'])}" if view["labels"] else ""
        fingerprint = view["fingerprint"] if isinstance(view["fingerprint"], str) else \
            f"{len(view['fingerprint'])} video frames"
        return f"submission: {view['signal']} {fingerprint}{labels}"
    if view["kind"] == "withdrawal":
        return f"withdrawal of entries {', '.join(map(str, view['targets']))}"
    if view["kind"] == "feedback":
        return f"feedback {view['verdict']} about entry {view['index']} of {view['origin']}"
    return "announcement" + (" with a key rotation" if view.get("new_vkey") else "")


def verify_proof(args) -> int:
    """Check a proof file offline against a policy (or a log key and k-of-n witnesses);
    say in plain words what it proves. Exit 0 valid, 1 proves nothing, 2 unusable input."""
    import datetime
    import json
    from pathlib import Path

    from node.witness.policy import PolicyOptionError, policy_from_options, witness_label
    from protocol.errors import ProtocolError
    from protocol.note import Verifier
    from protocol.policy import Policy
    from protocol.tlogproof import MAX_BYTES, failure_kind, parse_proofs, verify_proofs

    if not args.file:
        return fail("usage: ncii-node audit verify-proof FILE (--policy FILE | --vkey VKEY [--witness VKEY "
                    "... -k K])", 2)
    try:
        with open(args.file, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        entry = Path(args.entry).read_bytes() if args.entry else None
        policy = policy_from_options(args.policy, args.witness, args.k)
        log_keys = [Verifier.from_vkey(args.vkey.strip())] if args.vkey else []
    except OSError as exc:
        return fail(f"cannot read {exc.filename}: {exc.strerror}", 2)
    except (PolicyOptionError, ProtocolError) as exc:
        return fail(str(exc), 2)
    if policy is None and not log_keys:
        return fail("give the policy to check the proof against: --policy FILE, or --vkey VKEY (the log's "
                    "key) with --witness VKEY ... -k K", 2)
    if policy is None:
        policy = Policy.k_of_n([], 0)
        print("note: no witness required; the proof shows only what the log itself signed", file=sys.stderr)
    origin = args.origin or (log_keys[0].name if log_keys else None)
    try:
        proofs = parse_proofs(data)
        entries = {}
        if entry is not None:
            if len(proofs.proofs) != 1:
                return fail("--entry goes with a proof of one entry", 2)
            entries = {proofs.proofs[0].index: entry}
        verified = verify_proofs(proofs, policy, entries=entries, origin=origin, log_keys=log_keys)
    except ProtocolError as exc:
        kind = failure_kind(exc)
        if args.json:
            print(json.dumps({"valid": False, "failure": kind, "reason": str(exc)}))
        else:
            print(f"NOT a valid proof ({kind}): {exc}")
        return 1

    def iso(t: int) -> str:
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()

    cp = verified.checkpoint
    roles = cosigner_roles(verified.quorum.cosigned)
    cosigned = {witness_label(policy, name): iso(t) for name, t in sorted(roles["witnesses"].items())}
    published = {name: iso(t) for name, t in roles["published"].items()}
    applied = {name: iso(t) for name, t in sorted(roles["applied"].items())}
    latest = iso(max(roles["witnesses"].values())) if roles["witnesses"] else None
    if args.json:
        print(json.dumps({
            "valid": True, "origin": cp.origin, "size": cp.size,
            "root_hash": base64_of(cp.root_hash), "log_key": verified.log_key,
            "quorum": policy.describe(), "cosigned": cosigned,
            "published": next(iter(published.values()), None), "applied": applied,
            "entries": [{"index": e.index, "leaf_hash": e.leaf_hash.hex(), "description": _describe_entry(e.entry)}
                        for e in verified.entries],
            "in_log_no_later_than": latest,
        }, sort_keys=True))
        return 0
    n = len(verified.entries)
    print(f"VALID proof: {n} entr{'y' if n == 1 else 'ies'} in log {cp.origin}, signed by {verified.log_key}")
    print(f"  checkpoint: size {cp.size}, root {base64_of(cp.root_hash)}")
    print(f"  witnesses: the policy needs {policy.describe()}: met"
          + (f"; cosigned by {', '.join(f'{k} at {v}' for k, v in cosigned.items())}" if cosigned else ""))
    for e in verified.entries:
        print(f"  entry {e.index}: {_describe_entry(e.entry)}")
    for at in published.values():
        print(PUBLISHED.format(at=at))
    kinds = {_describe_entry(e.entry).split(":", 1)[0] for e in verified.entries}
    what = " and ".join(x for x, kind in ((APPLIED_SUBMISSIONS, "submission"), (APPLIED_WITHDRAWALS, "withdrawal"))
                        if kind in kinds) or "it acts on the entries here"
    for name, at in applied.items():
        print(APPLIED.format(name=name, at=at, what=what))
    if latest:
        print(WHAT_IT_PROVES.format(size=cp.size, latest=latest))
    else:
        print(WHAT_IT_PROVES.split(" So these")[0].format(size=cp.size) + " No witness cosigned it"
              + (", so only the helpline's own word says when." if published else ", so it says nothing about when."))
    print(WHAT_IT_DOES_NOT_APPLIED if applied else WHAT_IT_DOES_NOT)
    return 0


PUBLISHED = ("Published: the helpline says it published this checkpoint at {at} (its own statement, signed "
             "with its acknowledgement key: the helpline's word, not a witness's).")
APPLIED = ("Applied: {name} says it had verified this checkpoint and applied every entry of it by {at}: "
           "{what} (its statement, signed with its acknowledgement key and kept in its own log).")
APPLIED_SUBMISSIONS = "it matches the fingerprints submitted here"
APPLIED_WITHDRAWALS = "it no longer matches the fingerprints the withdrawal here names"
WHAT_IT_DOES_NOT_APPLIED = (
    "What it does not prove: when each entry was added before those times; that the log still shows the same "
    "tree today or to everyone; who asked for an entry, or why; that a platform does what it says (its "
    "statement is public and permanent, so it can be held to it).")


def cosigner_roles(cosigned: dict[str, int]) -> dict[str, dict[str, int]]:
    """Split a quorum's cosigners by the names a receipt policy gives them
    (node/cases/receipt.py): the helpline's publication cosignature, platforms'
    acknowledgements, and witnesses (every other name)."""
    from node.cases.receipt import APPLIED_BY, PUBLISHED_BY

    roles: dict[str, dict[str, int]] = {"published": {}, "applied": {}, "witnesses": {}}
    for name, t in cosigned.items():
        if name.startswith(PUBLISHED_BY):
            roles["published"][name[len(PUBLISHED_BY):]] = t
        elif name.startswith(APPLIED_BY):
            roles["applied"][name[len(APPLIED_BY):]] = t
        else:
            roles["witnesses"][name] = t
    return roles


def base64_of(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")
