"""`ncii-node status`: the health of every followed log (size, lag, errors, forks)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="show the followed logs: size, last verified checkpoint, lag, errors, forks",
        description="Reads the node's database (works while the node runs). With --json prints one "
        "object whose `logs` list holds, per followed log, origin, size, forked, last_verified_at, "
        "lag_entries, lag_seconds and last_error, and whose `fingerprints` holds the counts of active "
        "and withdrawn fingerprints. Exit status 3 when a followed log has forked.",
    )
    p.add_argument("--dir", required=True, help="data directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from node.datadir import DataDir, DataDirError
    from node.follow.status import format_report, status_report
    from node.store import open_db

    try:
        db = open_db(DataDir(args.dir).db_path)
    except DataDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        report = status_report(db)
    finally:
        db.close()
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 3 if report["forked_logs"] else 0
