"""`ncii-node key`: print the node's public keys."""

from __future__ import annotations

from node.cli._common import add_dir_argument, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "key",
        help="print the log's verifier key (or, with --request, the request key)",
        description="Prints the verifier key that checks this log's checkpoints; with --request, "
        "the public request key that other nodes register (`ncii-node readers add`) to let this "
        "node read their logs.",
    )
    add_dir_argument(p)
    p.add_argument("--request", action="store_true", help="print the request key instead")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    from node.datadir import DataDir

    datadir = DataDir(args.dir)
    signer = datadir.load_request_signer() if args.request else datadir.load_log_signer()
    print(signer.verifier_key())
    return 0
