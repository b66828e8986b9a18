"""`ncii-node stats`: the console's figures on the command line."""

from __future__ import annotations

from node.cli._common import add_dir_argument, fail, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stats",
        help="show the node's figures: cases, verdicts, takedown rates, matches, followed logs",
        description="Reads the node's database (works while the node runs) and prints the figures of the "
        "admin console: on a helpline, cases opened and withdrawn, fingerprints published, verdicts received "
        "per platform, the takedown rate per platform (cases with a `removed` verdict / cases with any verdict, "
        "fingerprints removed / matched, over the cases and fingerprints first answered in the window) and "
        "the time from publication to the first verdict; on a platform, matches per followed log, verdicts "
        "sent and suppressions; on every node, its own log and the followed logs. Figures of the running "
        "process (match latency, index memory) are on the console and /metrics.",
    )
    add_dir_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--since", default="30d", metavar="WINDOW",
                   help="7d, 30d (default), all, a number of days like 90d, or a date YYYY-MM-DD (UTC)")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import json

    from node.datadir import DataDir
    from node.figures import WindowError, format_figures, node_figures
    from node.store import open_db

    datadir = DataDir(args.dir)
    config = datadir.config
    db = open_db(datadir.db_path)
    try:
        figures = node_figures(db, config, args.since)
    except WindowError as exc:
        return fail(str(exc), 2)
    finally:
        db.close()
    print(json.dumps(figures, indent=1) if args.json else format_figures(figures))
    return 0
