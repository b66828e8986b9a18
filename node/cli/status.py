"""`ncii-node status`: the health of this node and of every followed log (size, lag,
errors, forks), with an exit status that monitoring can use."""

from __future__ import annotations

import argparse

from node.cli._common import add_dir_argument, reports_datadir_errors


def register(subparsers) -> None:
    from node.follow.status import EXIT_STATUS_HELP

    p = subparsers.add_parser(
        "status",
        help="show this node's log and the followed logs: size, last verified checkpoint, lag, errors, forks",
        description="Reads the node's database (works while the node runs). With --json prints one "
        "object whose `node` holds this node's origin, role, log size, last checkpoint time and whether a "
        "`serve` runs for the directory; whose `logs` list holds, per followed log, origin, state (ok, failing, "
        "forked), size, forked, last_verified_at, lag_entries, lag_seconds, last_error, failures (in a row), "
        "errors_total and, for a fork, its evidence file; whose `fingerprints` holds the counts of active, "
        "withdrawn and suppressed fingerprints; whose `gossip` list holds the peers views are compared "
        "with; and on a helpline `cases`: how many cases were opened this hour and in the last 24 hours "
        "against the budget, how many creations the limits refused and how often a proof of work was asked. "
        "With a federation list followed, `federation` holds its URL, serial, last check, last refusal and the "
        "changes waiting for approval; on the node that publishes the list (`federation publish`), "
        "`federation_published` holds its federation, its log's size and, per witness this node uses, whether "
        "it has cosigned the list's checkpoint served. "
        "`ncii-node stats` gives the figures (cases, verdicts, takedown rates, matches).",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dir_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import json

    from node.datadir import DataDir
    from node.federation.cosigning import format_published, published_report
    from node.federation.subscription import Own
    from node.federation.subscription import format_report as format_federation
    from node.federation.subscription import report as federation_report
    from node.follow.status import exit_status, format_report, iso_time, status_report
    from node.store import open_db

    datadir = DataDir(args.dir)
    config = datadir.config
    serving = datadir.serving_node() is not None
    db = open_db(datadir.db_path)
    try:
        report = status_report(db, own_origin=config.node.origin)
        size, published_at = db.stats.own_log_size()
        if config.node.role == "helpline":
            import time

            from node.cases.creation import creation_report

            report["cases"] = creation_report(db, config.cases, time.time())
        federation = federation_report(db, Own(config.node.role, config.node.origin))
        if federation is not None:
            report["federation"] = federation
        published = published_report(datadir.root, db.witness.list_log_witnesses())
        if published is not None:
            report["federation_published"] = published
    finally:
        db.close()
    report["node"] = {"origin": config.node.origin, "role": config.node.role, "serving": serving,
                      "log_size": size, "last_checkpoint_at": iso_time(published_at),
                      "database": ({"backend": "postgresql", "url": config.database.url} if datadir.uses_postgres
                                   else {"backend": "sqlite", "path": str(datadir.db_path)})}
    text = json.dumps(report, indent=1) if args.json else format_report(report)
    if "cases" in report and not args.json:
        text += "\n" + format_cases(report["cases"])
    if "federation_published" in report and not args.json:
        text += "\n" + format_published(report["federation_published"], serving)
    if "federation" in report and not args.json:
        text += "\n" + format_federation(report["federation"])
    print(text)
    return exit_status(report, serving)


def format_cases(cases: dict) -> str:
    """The case intake of a helpline, for people: how fast cases are opened, against the budget."""
    refused = cases["refused_last_24_hours"]
    states = cases["states"]
    return "\n".join([
        f"cases: {states['active']} active, {states['withdrawn']} withdrawn, {states['pending']} being opened, "
        f"{states['abandoned']} abandoned",
        f"  opened         {cases['created_this_hour']} this hour (UTC; budget {cases['per_hour']}/hour), "
        f"{cases['created_last_24_hours']} in the last 24 hours (budget {cases['per_day']}/day)",
        f"  refused        {refused['address']} (one address), {refused['network']} (one network), "
        f"{refused['budget']} (the node's budget) in the last 24 hours",
        f"  proof of work  asked above {cases['proof_of_work_above_per_hour']} cases in an hour; asked "
        f"{cases['proof_of_work_asked_last_24_hours']} time(s) in the last 24 hours",
    ])
