"""`ncii-node cases withdraw`: the operator's clean-up after a flood of cases.

    ncii-node cases withdraw --dir DIR --from 2026-12-03T14:00 [--to 2026-12-03T15:00] [--dry-run]

Withdraws, with the reason `abuse`, every active case whose entries the log published
between the two times (UTC unless the time says otherwise). The withdrawals are log
entries like a person's, so every follower stops matching those fingerprints; a real
person whose case was in the window sees in its status that the helpline withdrew it
and can open it again. Talks to the running node's admin site (POST
/admin/cases/withdraw), like `ncii-node append`. spec/parts/cases.md §12.
"""

from __future__ import annotations

from node.cli._common import NodeRequestError, add_dir_argument, fail, post_to_node, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cases",
        help="helpline cases: withdraw, as abuse, the cases opened in a time window",
        description="Operator commands for the cases of a helpline node.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    w = actions.add_parser(
        "withdraw",
        help="withdraw (reason: abuse) every case the log published between two times",
        description="Withdraws, with reason `abuse`, every active case whose entries the log published "
        "between --from and --to (ISO 8601, UTC unless an offset is given; --to defaults to now). "
        "Prints how many cases and entries. With --dry-run, only counts them.",
    )
    add_dir_argument(w, help="data directory of the running helpline node")
    w.add_argument("--from", dest="start", required=True, metavar="TIME", help="e.g. 2026-12-03T14:00")
    w.add_argument("--to", dest="end", metavar="TIME", help="default: now")
    w.add_argument("--dry-run", action="store_true", help="count, withdraw nothing")
    w.set_defaults(func=run)


def parse_time(text: str) -> float:
    """ISO 8601 (a date, or a date and time, with or without an offset: UTC if none)."""
    import datetime

    value = datetime.datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.timestamp()


@reports_datadir_errors
def run(args) -> int:
    import json
    import time

    from node.datadir import DataDir

    try:
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end else time.time()
    except ValueError as exc:
        return fail(f"times must be ISO 8601, e.g. 2026-12-03T14:00 ({exc})", 2)
    if start >= end:
        return fail("--from must come before --to", 2)
    datadir = DataDir(args.dir)
    if datadir.config.node.role != "helpline":
        return fail(f"this node has no cases: its [node] role is {datadir.config.node.role!r}")
    info = datadir.serving_node()
    if not info:
        return fail(f"no node is serving {datadir.root}; start it with `ncii-node serve --dir {args.dir}`")
    body = json.dumps({"from": start, "to": end, "dry_run": args.dry_run}).encode()
    try:
        answer = json.loads(post_to_node(info, datadir.admin_token(), "/admin/cases/withdraw", body, timeout=600))
    except NodeRequestError as exc:
        return fail(str(exc))
    verb = "would withdraw" if args.dry_run else "withdrew"
    print(f"{verb} {answer['cases']} case(s), {answer['entries']} entries (log sizes {answer['first_size']} to "
          f"{answer['last_size']}), reason: abuse")
    return 0
