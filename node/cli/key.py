"""`ncii-node key`: print the node's public keys."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "key",
        help="print the log's verifier key (or, with --request, the request key)",
        description="Prints the verifier key that checks this log's checkpoints; with --request, "
        "the public request key that other nodes register (`ncii-node readers add`) to let this "
        "node read their logs.",
    )
    p.add_argument("--dir", required=True, help="data directory")
    p.add_argument("--request", action="store_true", help="print the request key instead")
    p.set_defaults(func=run)


def run(args) -> int:
    from node.datadir import DataDir, DataDirError

    datadir = DataDir(args.dir)
    try:
        signer = datadir.load_request_signer() if args.request else datadir.load_log_signer()
    except DataDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(signer.verifier_key())
    return 0
