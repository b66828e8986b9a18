"""`ncii-node audit`: audit a whole log, or check a split-view evidence file or a proof.

    ncii-node audit URL --vkey VKEY [--json] [--state DIR] [--request-key FILE] [--peer URL ...] [--html FILE]
                        [--policy FILE | --witness VKEY ... -k K] [--platform URL VKEY ...] [--ack-key VKEY]
    ncii-node audit verify-evidence FILE
    ncii-node audit verify-proof FILE (--policy FILE | --vkey VKEY [--witness VKEY ... -k K])
                        [--origin ORIGIN] [--entry FILE] [--json]

Exit status: 0 nothing wrong (for verify-evidence: the evidence holds, the log
equivocated; for verify-proof: the proof holds), 1 a violation (the file proves
nothing), 2 the audit could not be done.
"""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "audit",
        help="download and check a whole log, or check split-view evidence",
        description="`ncii-node audit URL --vkey VKEY` downloads the log at URL, checks the checkpoint "
        "signature, every tile hash and the root, decodes every entry strictly, checks the invariants "
        "(withdrawals name earlier entries, feedback names a log and index, key rotations are signed "
        "by the current key), compares with the checkpoint seen last time (--state) and with what "
        "peers have seen (--peer), prints a report and writes an HTML page with a chart. Exits 1 on "
        "any violation. `ncii-node audit verify-evidence FILE` checks an evidence file: exit 0 means "
        "the log signed two inconsistent checkpoints.",
    )
    p.add_argument("url", metavar="URL", help="the log's URL prefix, or `verify-evidence` or `verify-proof`")
    p.add_argument("file", metavar="FILE", nargs="?", help="with verify-evidence or verify-proof: the file")
    p.add_argument("--vkey", help="the log's verifier key (name+hhhhhhhh+base64)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--state", metavar="DIR", help="keep the last verified checkpoint here and compare with it")
    p.add_argument("--request-key", metavar="FILE",
                   help="a node's request key file (DIR/keys/request.key) to read a restricted log")
    p.add_argument("--peer", action="append", default=[], metavar="URL",
                   help="a node whose GET /witness/seen is compared with our view (repeatable)")
    p.add_argument("--html", metavar="FILE", help="where to write the HTML report "
                   "(default: DIR/report-<origin>.html with --state, else ./ncii-audit-report.html)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    p.add_argument("--policy", metavar="FILE", help="a C2SP tlog-policy: the witness cosignatures the "
                   "checkpoint must carry (violation `witnesses` if not)")
    p.add_argument("--witness", action="append", default=[], metavar="VKEY",
                   help="a trusted witness's cosigner key (repeatable; with -k)")
    p.add_argument("-k", type=int, default=None, help="how many of the --witness keys must have cosigned")
    p.add_argument("--platform", nargs=2, action="append", default=[], metavar=("URL", "VKEY"),
                   help="a platform that follows this (helpline's) log: its URL and log key; its log is audited "
                   "too, and the report gives its acknowledgement latency and the withdrawals it never "
                   "acknowledged (repeatable)")
    p.add_argument("--ack-key", metavar="VKEY", help="the audited log's acknowledgement key, to check the "
                   "publication times platforms carry (default: the one its /node.json states)")
    p.add_argument("--origin", help="with verify-proof: the only acceptable origin (default: the --vkey's "
                   "name, or any log of the policy)")
    p.add_argument("--entry", metavar="FILE", help="with verify-proof: the entry bytes, for a proof made "
                   "with --no-entry")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.url == "verify-evidence":
        return _verify_evidence(args)
    if args.url == "verify-proof":
        from node.cli.proof import verify_proof

        return verify_proof(args)
    if args.file is not None:
        print("error: unexpected argument after URL", file=sys.stderr)
        return 2
    if not args.vkey:
        print("error: --vkey VKEY is required: the log's verifier key, obtained from its operator "
              "(never trust the key a server presents)", file=sys.stderr)
        return 2
    import asyncio
    import json
    from pathlib import Path

    from node.audit import report as report_mod
    from node.audit.run import AuditError, AuditOptions, run_audit
    from node.witness.policy import PolicyOptionError, policy_from_options

    try:
        policy = policy_from_options(args.policy, args.witness, args.k)
    except PolicyOptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = AuditOptions(policy=policy, url=args.url, vkey=args.vkey.strip(),
                           state_dir=Path(args.state) if args.state else None,
                           request_key=Path(args.request_key) if args.request_key else None,
                           peers=list(args.peer), html_path=Path(args.html) if args.html else None,
                           timeout=args.timeout, platforms=[(u.rstrip("/"), v.strip()) for u, v in args.platform],
                           ack_vkey=args.ack_key.strip() if args.ack_key else None)
    try:
        outcome = asyncio.run(run_audit(options))
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(outcome.report, sort_keys=True))
    else:
        sys.stdout.write(report_mod.to_text(outcome.report))
    return 0 if outcome.report["ok"] else 1


def _verify_evidence(args) -> int:
    from pathlib import Path

    from node.witness.evidence import EvidenceError, verify_evidence

    if not args.file:
        print("error: usage: ncii-node audit verify-evidence FILE", file=sys.stderr)
        return 2
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    from node.witness import ack_evidence

    doc = ack_evidence.load(data)
    if doc is not None:
        try:
            explanation = ack_evidence.verify_ack_evidence(doc)
        except EvidenceError as exc:
            print(f"NOT evidence of a false acknowledgement: {exc}")
            return 1
        print(f"VALID evidence of an acknowledgement of a tree the log never had: {explanation}")
        return 0
    try:
        verified = verify_evidence(data)
    except EvidenceError as exc:
        print(f"NOT evidence of equivocation: {exc}")
        return 1
    print(f"VALID evidence: log {verified.origin} (key {verified.vkey}) equivocated: {verified.explanation}")
    return 0
