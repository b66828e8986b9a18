"""`ncii-node suppress`: never match an entry of a followed log again on this node (a known false match).

    ncii-node suppress --dir DIR --origin helpline.example/log --index 42 [--no-feedback]

The entry stops matching at once and for good (across restarts; node/matcher/suppress.py),
and unless --no-feedback the node publishes a `disputed-false-match` feedback entry
in its own log, so the helpline learns of the dispute.

When a node serves DIR, the command asks it (POST /v1/match/suppress on the admin
site, with DIR/admin.token) and prints the outcome as one JSON line, e.g.

    {"origin": "helpline.example/log", "index": 42, "was_matching": true,
     "feedback": "published", "feedback_index": 17}

When none does, the suppression is written to DIR's database (it holds from the next
start) and the feedback is left "pending": the node publishes it when it next starts.

Exit status: 0 suppressed, 1 refused (entry unknown here, node unreachable), 2 usage.
"""

from __future__ import annotations

import sys

from node.cli._common import NodeRequestError, add_dir_argument, fail, post_to_node, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "suppress",
        help="stop matching an entry of a followed log here, as a known false match (platforms)",
        description="Suppresses entry INDEX of the followed log ORIGIN on this node: it never matches again. "
        "Unless --no-feedback, publishes disputed-false-match feedback about it in this node's log.",
        epilog="Exit status: 0 suppressed, 1 refused or the node could not be reached, 2 usage error.",
    )
    add_dir_argument(p, help="data directory of the platform node")
    p.add_argument("--origin", required=True, help="origin of the followed log the entry belongs to")
    p.add_argument("--index", required=True, type=int, help="index of the entry in that log")
    p.add_argument("--no-feedback", action="store_true",
                   help="suppress locally only; publish no disputed-false-match feedback")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import json

    from node.datadir import DataDir

    if args.index < 0:
        return fail("--index is a non-negative whole number", 2)
    datadir = DataDir(args.dir)
    _ = datadir.config  # load and validate before anything else
    info = datadir.serving_node()
    if not info:
        return _suppress_offline(datadir, args)
    body = json.dumps({"origin": args.origin, "index": args.index, "feedback": not args.no_feedback}).encode()
    try:
        answer = json.loads(post_to_node(info, datadir.admin_token(), "/v1/match/suppress", body, timeout=120))
    except NodeRequestError as exc:
        message = str(exc)
        if exc.status == 404 and "not a fingerprint" not in message:
            message = "the node serving this directory has no match API (is its [node] role \"platform\"?)"
        return fail(message)
    print(json.dumps(answer))
    if answer.get("feedback_error"):
        print(f"warning: suppressed, but the feedback is not published yet ({answer['feedback_error']}); "
              "the node retries when it next starts", file=sys.stderr)
    return 0


def _suppress_offline(datadir, args) -> int:
    import json

    from node.errors import Refused
    from node.matcher.suppress import suppress_offline
    from node.store import open_db

    db = open_db(datadir.db_path)
    try:
        outcome = suppress_offline(db, args.origin, args.index, not args.no_feedback)
    except Refused as exc:
        return fail(str(exc))
    finally:
        db.close()
    print(json.dumps(outcome.to_json()))
    if outcome.feedback == "pending":
        print("note: no node is serving this directory; the disputed-false-match feedback will be "
              "published when it next starts", file=sys.stderr)
    return 0
