"""`ncii-node key`: print the node's public keys, or the token of its match API."""

from __future__ import annotations

from node.cli._common import add_dir_argument, fail, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "key",
        help="print the log's verifier key (or, with --request, the request key)",
        description="Prints the verifier key that checks this log's checkpoints; with --request, "
        "the public request key that other nodes register (`ncii-node readers add`) to let this "
        "node read their logs; with --ack, the acknowledgement key whose cosignatures say what this node "
        "applied (spec/parts/acknowledgements.md); with --match-token, the secret token a platform's upload service "
        "sends to the match API (it can match, but not append or publish feedback).",
    )
    add_dir_argument(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--request", action="store_true", help="print the request key instead")
    which.add_argument("--ack", action="store_true",
                       help="print the acknowledgement key (C2SP cosigner key of this node's acknowledgements)")
    which.add_argument("--match-token", action="store_true",
                       help="print the match API token (DIR/match.token; platform nodes) instead")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    from node.datadir import DataDir

    datadir = DataDir(args.dir)
    if args.match_token:
        return _print_match_token(datadir)
    if args.ack:
        signer = datadir.load_ack_signer(create=True)
    else:
        signer = datadir.load_request_signer() if args.request else datadir.load_log_signer()
    print(signer.verifier_key())
    return 0


def _print_match_token(datadir) -> int:
    role = datadir.config.node.role
    if role != "platform":
        return fail(f"this node has no match API: its [node] role is {role!r}, not 'platform'")
    if not datadir.match_token_path.exists():
        return fail(f"no match token yet at {datadir.match_token_path}; the node creates it when it next "
                    f"starts (`ncii-node serve --dir {datadir.root}`)")
    print(datadir.match_token())
    return 0
