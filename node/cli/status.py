"""`ncii-node status`: the health of every followed log (size, lag, errors, forks)."""

from __future__ import annotations

from node.cli._common import add_dir_argument, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="show the followed logs: size, last verified checkpoint, lag, errors, forks",
        description="Reads the node's database (works while the node runs). With --json prints one "
        "object whose `logs` list holds, per followed log, origin, size, forked, last_verified_at, "
        "lag_entries, lag_seconds, last_error and, for a fork, its evidence file; whose `fingerprints` "
        "holds the counts of active, withdrawn and suppressed fingerprints; and whose `gossip` list holds "
        "the peers views are compared with. Exit status 3 when a followed log has forked.",
    )
    add_dir_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import json

    from node.datadir import DataDir
    from node.follow.status import format_report, status_report
    from node.store import open_db

    datadir = DataDir(args.dir)
    db = open_db(datadir.db_path)
    try:
        report = status_report(db, own_origin=datadir.config.node.origin)
    finally:
        db.close()
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 3 if report["forked_logs"] else 0
