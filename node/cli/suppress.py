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


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "suppress",
        help="stop matching an entry of a followed log here, as a known false match (platforms)",
        description="Suppresses entry INDEX of the followed log ORIGIN on this node: it never matches again. "
        "Unless --no-feedback, publishes disputed-false-match feedback about it in this node's log.",
        epilog="Exit status: 0 suppressed, 1 refused or the node could not be reached, 2 usage error.",
    )
    p.add_argument("--dir", required=True, help="data directory of the platform node")
    p.add_argument("--origin", required=True, help="origin of the followed log the entry belongs to")
    p.add_argument("--index", required=True, type=int, help="index of the entry in that log")
    p.add_argument("--no-feedback", action="store_true",
                   help="suppress locally only; publish no disputed-false-match feedback")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def run(args) -> int:
    import json
    import urllib.error
    import urllib.request

    from node.datadir import DataDir, DataDirError

    if args.index < 0:
        print("error: --index is a non-negative whole number", file=sys.stderr)
        return 2
    datadir = DataDir(args.dir)
    try:
        _ = datadir.config  # load and validate before anything else
        info = datadir.read_serve_info()
        if info and datadir.is_locked_by_other():
            body = json.dumps({"origin": args.origin, "index": args.index,
                               "feedback": not args.no_feedback}).encode()
            request = urllib.request.Request(info["admin_url"] + "/v1/match/suppress", data=body, method="POST",
                                             headers={"Authorization": f"Bearer {datadir.admin_token()}",
                                                      "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    answer = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                try:
                    message = json.loads(exc.read().decode()).get("error", exc.reason)
                except ValueError:
                    message = exc.reason
                if exc.code == 404 and "not a fingerprint" not in str(message):
                    message = "the node serving this directory has no match API (is its [node] role \"platform\"?)"
                return _fail(message)
            except (urllib.error.URLError, OSError) as exc:
                return _fail(f"cannot reach the node at {info['admin_url']}: {getattr(exc, 'reason', exc)}")
            print(json.dumps(answer))
            if answer.get("feedback_error"):
                print(f"warning: suppressed, but the feedback is not published yet ({answer['feedback_error']}); "
                      "the node retries when it next starts", file=sys.stderr)
            return 0
        return _suppress_offline(datadir, args)
    except DataDirError as exc:
        return _fail(str(exc))


def _suppress_offline(datadir, args) -> int:
    import json

    from node.matcher.suppress import SuppressError, suppress_offline
    from node.store import open_db

    db = open_db(datadir.db_path)
    try:
        outcome = suppress_offline(db, args.origin, args.index, not args.no_feedback)
    except SuppressError as exc:
        return _fail(str(exc))
    finally:
        db.close()
    print(json.dumps(outcome.to_json()))
    if outcome.feedback == "pending":
        print("note: no node is serving this directory; the disputed-false-match feedback will be "
              "published when it next starts", file=sys.stderr)
    return 0
