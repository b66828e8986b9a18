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

import sys

VERDICT_CHOICES = ("removed", "matched-pending-review", "not-violating", "disputed-false-match")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "feedback",
        help="publish a verdict on an entry of a followed log (platforms)",
        description="Appends a feedback entry (verdict on entry INDEX of the followed log ORIGIN) to the "
        "log of the node serving DIR and prints where it was published.",
    )
    p.add_argument("--dir", required=True, help="data directory of the running node")
    p.add_argument("--origin", required=True, help="origin of the followed log the entry belongs to")
    p.add_argument("--index", required=True, type=int, help="index of the entry in that log")
    p.add_argument("--verdict", required=True, choices=VERDICT_CHOICES, help="what the platform found or did")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import urllib.error
    import urllib.request

    from node.datadir import DataDir, DataDirError

    datadir = DataDir(args.dir)
    try:
        token = datadir.admin_token()
    except DataDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = datadir.read_serve_info()
    if not info or not datadir.is_locked_by_other():
        print(f"error: no node is serving {datadir.root}; start it with `ncii-node serve --dir {args.dir}`",
              file=sys.stderr)
        return 1
    body = json.dumps({"origin": args.origin, "index": args.index, "verdict": args.verdict}).encode()
    request = urllib.request.Request(info["admin_url"] + "/v1/feedback", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            print(response.read().decode().strip())
            return 0
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read().decode()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        print(f"error: {message}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot reach the node at {info['admin_url']}: {getattr(exc, 'reason', exc)}",
              file=sys.stderr)
        return 1
