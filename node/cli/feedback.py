"""`ncii-node feedback`: publish a platform's verdict on an entry of a followed log.

    ncii-node feedback --dir DIR --origin helpline.example/log --index 42 --verdict removed

The running node (the only writer of its log) appends a Feedback entry that quotes
the leaf hash of entry 42 from its own verified copy of that log, and this command
prints, once it is published, one JSON line:

    {"index": 7, "leaf_hash": "<hex>", "checkpoint_size": 8, "entry": {...}}

It talks to the node's admin endpoint (POST /v1/feedback, DIR/serve.json and
DIR/admin.token), like `ncii-node append`.
"""

from __future__ import annotations

from node.cli._common import NodeRequestError, add_dir_argument, fail, post_to_node, reports_datadir_errors

VERDICT_CHOICES = ("removed", "matched-pending-review", "not-violating", "disputed-false-match")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "feedback",
        help="publish a verdict on an entry of a followed log (platforms)",
        description="Appends a feedback entry (verdict on entry INDEX of the followed log ORIGIN) to the "
        "log of the node serving DIR and prints where it was published.",
    )
    add_dir_argument(p, help="data directory of the running node")
    p.add_argument("--origin", required=True, help="origin of the followed log the entry belongs to")
    p.add_argument("--index", required=True, type=int, help="index of the entry in that log")
    p.add_argument("--verdict", required=True, choices=VERDICT_CHOICES, help="what the platform found or did")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import json

    from node.datadir import DataDir

    datadir = DataDir(args.dir)
    token = datadir.admin_token()
    info = datadir.serving_node()
    if not info:
        return fail(f"no node is serving {datadir.root}; start it with `ncii-node serve --dir {args.dir}`")
    body = json.dumps({"origin": args.origin, "index": args.index, "verdict": args.verdict}).encode()
    try:
        print(post_to_node(info, token, "/v1/feedback", body, timeout=120).decode().strip())
    except NodeRequestError as exc:
        return fail(str(exc))
    return 0
