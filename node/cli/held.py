"""`ncii-node match-budget` and `ncii-node match-release`: what a platform holds back
from each followed log (node/matcher/holds.py; spec/parts/matching-api.md, "Budgets
and held clusters").

    ncii-node match-budget --dir DIR                       every log's own budgets
    ncii-node match-budget --dir DIR ORIGIN [--max-fingerprints N|default]
                           [--max-per-hour N|default] [--max-per-day N|default]
    ncii-node match-release --dir DIR CLUSTER              a held cluster goes in the index

A log's budgets bound what it can put in the index: fingerprints in it, and put into
it per clock hour and per 24 clock hours (defaults: config.toml [match]). A cluster
is held when a log publishes many fingerprints within a few bits of one another;
`ncii-node status` names each held cluster and its id. When a node serves DIR, the
commands ask it (admin site, DIR/admin.token), so the change applies at once;
otherwise they write DIR's database and the node applies it when it starts.

Exit status: 0 done, 1 refused (unknown cluster, node unreachable), 2 usage.
"""

from __future__ import annotations

import contextlib
import json

from node.cli._common import NodeRequestError, add_dir_argument, fail, post_to_node, reports_datadir_errors

EXIT_USAGE = 2
LIMITS = (("max_fingerprints", "--max-fingerprints", "fingerprints in the index"),
          ("max_per_hour", "--max-per-hour", "fingerprints put in the index per clock hour"),
          ("max_per_day", "--max-per-day", "fingerprints put in the index per 24 clock hours"))


def register(subparsers) -> None:
    b = subparsers.add_parser(
        "match-budget", help="show or set a followed log's budgets in the match index (platforms)",
        description="Without ORIGIN, prints every log that has budgets of its own. With ORIGIN and limits, "
        "sets them ('default' returns a limit to config.toml [match]); takes effect at once in a running node.",
        epilog="Exit status: 0 done, 1 the node refused or could not be reached, 2 usage error.")
    add_dir_argument(b, help="data directory of the platform node")
    b.add_argument("origin", nargs="?", metavar="ORIGIN", help="the followed log's origin")
    for _key, flag, what in LIMITS:
        b.add_argument(flag, metavar="N", help=f"{what}; a whole number, or 'default'")
    b.set_defaults(func=run_budget)

    r = subparsers.add_parser(
        "match-release", help="let a held cluster of a followed log into the match index (platforms)",
        description="A followed log that publishes many fingerprints within a few bits of one another has "
        "them held out of the match index (ncii-node status shows the cluster and its id). Releasing it "
        "indexes them (within the log's budgets) and stops holding that cluster.",
        epilog="Exit status: 0 released, 1 no such held cluster or the node could not be reached, 2 usage.")
    add_dir_argument(r, help="data directory of the platform node")
    r.add_argument("cluster", type=int, metavar="CLUSTER", help="the cluster's id (ncii-node status)")
    r.set_defaults(func=run_release)


def _through_node(datadir, path: str, body: dict, *, timeout: float) -> int | None:
    """Ask the node serving DIR (printing its answer as one JSON line) and return the
    exit status; None when no node serves DIR."""
    info = datadir.serving_node()
    if not info:
        return None
    try:
        answer = json.loads(post_to_node(info, datadir.admin_token(), path, json.dumps(body).encode(),
                                         timeout=timeout))
    except NodeRequestError as exc:
        return fail(str(exc))
    print(json.dumps(answer))
    return 0


def _limit(value: str | None, flag: str) -> int | None | str:
    if value is None or value == "default":
        return None
    try:
        number = int(value.replace("_", "").replace(",", ""))
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(f"{flag} is a whole number from 0 up, or 'default'")
    return number


@reports_datadir_errors
def run_budget(args) -> int:
    from node.datadir import DataDir
    from node.store import matching as matching_store
    from node.store import open_db

    datadir = DataDir(args.dir)
    defaults = datadir.config.match
    values = {}
    for key, flag, _what in LIMITS:
        given = getattr(args, key)
        if given is None:
            continue
        if args.origin is None:
            return fail(f"{flag} needs the log's ORIGIN", EXIT_USAGE)
        try:
            values[key] = _limit(given, flag)
        except ValueError as exc:
            return fail(str(exc), EXIT_USAGE)
    if not values:
        with contextlib.closing(open_db(datadir.db_path)) as db:
            current = matching_store.budgets(db)
        if args.origin is not None:
            current = {args.origin: current.get(args.origin, {})}
        default = {key: getattr(defaults, f"{key}_per_log") for key, _flag, _what in LIMITS}
        for origin, own in sorted(current.items()):
            print(origin + "\t" + "\t".join(
                f"{key}={default[key] if own.get(key) is None else own[key]}"
                f"{' (default)' if own.get(key) is None else ''}" for key, _flag, _what in LIMITS))
        if not current:
            print(f"every log has the default budgets: {defaults.max_fingerprints_per_log:,} fingerprints in the "
                  f"index, {defaults.max_per_hour_per_log:,} per hour, {defaults.max_per_day_per_log:,} per day")
        return 0
    asked = _through_node(datadir, "/v1/match/budget", {"origin": args.origin, **values}, timeout=60)
    if asked is not None:
        return asked
    with contextlib.closing(open_db(datadir.db_path)) as db:
        matching_store.set_budget(db, args.origin, values)
    print(json.dumps({"origin": args.origin, **values, "applied": "when the node next starts"}))
    return 0


@reports_datadir_errors
def run_release(args) -> int:
    from node.datadir import DataDir
    from node.store import matching as matching_store
    from node.store import open_db

    datadir = DataDir(args.dir)
    _ = datadir.config
    asked = _through_node(datadir, "/v1/match/release", {"cluster": args.cluster}, timeout=300)
    if asked is not None:
        return asked
    with contextlib.closing(open_db(datadir.db_path)) as db:
        known = {c.id: c for c in matching_store.clusters(db)}
        indices = matching_store.release_cluster(db, args.cluster)
    cluster = known.get(args.cluster)
    if cluster is None or not cluster.held:
        return fail(f"no held cluster has the id {args.cluster} (ncii-node status lists them)")
    print(json.dumps({"cluster": args.cluster, "origin": cluster.origin, "released": len(indices),
                      "indexed": "when the node next starts"}))
    return 0
