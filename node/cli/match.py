"""`ncii-node match`: does a file or fingerprint match an active entry of a followed log?

    ncii-node match --dir DIR PATH...                 photos and videos, hashed on this machine
    ncii-node match --dir DIR --pdq HEX [--md5 HEX]   fingerprints given directly
    ncii-node match-threshold --dir DIR ORIGIN [N | default]   a followed log's PDQ distance

Where the answer comes from: when a node serves DIR (DIR/serve.json, and the data
directory's lock is held), the command asks that node's match API (POST /v1/match on
its admin site, with DIR/admin.token), so it sees exactly the index the platform
matches uploads with, withdrawals included the moment the follower applied them.
Otherwise (or with --local) it builds the same index from DIR's database itself, which
takes about a second per million fingerprints.

Output: with --json, one JSON object per query (per PATH, per --pdq, per --md5, in
that order) on its own line:

    {"path": "upload.jpg", "signals": ["pdq"], "matches": [{"origin": ..., "index": 3,
     "signal": "pdq", "distance": 12, "labels": [], "quality": 90, "day": null,
     "feedback": {}}], "total": 1}

A video gives one object whose matches come from its MD5 and its vPDQ. Without
--json, one readable line per query and one per match.

Exit status: 0 every query was answered (matched or not), 1 some file could not be
hashed or the node could not answer, 2 usage error.
"""

from __future__ import annotations

import sys

from node.cli._common import NodeRequestError, add_dir_argument, fail, post_to_node, reports_datadir_errors

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
BATCH = 1000          # queries per request: the API's batch limit


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "match",
        help="match photos, videos or fingerprints against the followed logs (platforms)",
        description="Looks up each PATH (hashed on this machine: PDQ for photos, MD5 and vPDQ for videos) "
        "and each --pdq/--md5 fingerprint among the active entries of the logs DIR follows. Asks the node "
        "serving DIR when there is one, else builds the index from DIR's database.",
        epilog="Exit status: 0 every query answered, 1 a file could not be hashed or the node failed, 2 usage.",
    )
    add_dir_argument(p, help="data directory of the platform node")
    p.add_argument("paths", nargs="*", metavar="PATH", help="photo or video to match")
    p.add_argument("--pdq", action="append", default=[], metavar="HEX", help="a PDQ fingerprint (64 hex digits)")
    p.add_argument("--md5", action="append", default=[], metavar="HEX", help="an MD5 fingerprint (32 hex digits)")
    p.add_argument("--json", action="store_true", help="one JSON object per query and line")
    p.add_argument("--local", action="store_true",
                   help="build the index from the database even if a node is serving DIR")
    p.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for a starting node to finish building its index (default 120)")
    p.set_defaults(func=run)

    t = subparsers.add_parser(
        "match-threshold",
        help="set or show the PDQ match distance of a followed log (platforms)",
        description="With ORIGIN and THRESHOLD, entries of that followed log match PDQ (and vPDQ frame) "
        "fingerprints within Hamming distance THRESHOLD (0..256); 'default' returns it to 31. Without them, "
        "prints the threshold of every log that has its own. Takes effect at once in a running node.",
    )
    add_dir_argument(t, help="data directory of the platform node")
    t.add_argument("origin", nargs="?", metavar="ORIGIN", help="origin of the followed log")
    t.add_argument("threshold", nargs="?", metavar="THRESHOLD", help="0..256, or 'default'")
    t.set_defaults(func=run_threshold)


# ----------------------------------------------------------------------------- queries

class _Item:
    """One line of output: a file (with its fingerprints) or a fingerprint given."""

    def __init__(self, label: dict, fingerprints: list[dict], error: str | None = None):
        self.label = label                 # {"path": ...} or {"query": {...}}
        self.fingerprints = fingerprints   # JSON fingerprint objects
        self.error = error
        self.matches: list[dict] = []
        self.total = 0


def _items(args) -> list[_Item]:
    from protocol.errors import ProtocolError
    from protocol.signals import MD5, PDQ

    items = []
    if args.paths:
        from pathlib import Path

        from node.hashing.batch import hash_many

        jobs = 1 if len(args.paths) < 4 else None
        for outcome in hash_many([Path(p) for p in args.paths], jobs=jobs):
            items.append(_Item({"path": str(outcome.path)}, outcome.fingerprints, outcome.error))
    for signal, values in ((PDQ, args.pdq), (MD5, args.md5)):
        for value in values:
            value = value.strip().lower()
            try:
                signal.parse_json(value)
            except ProtocolError as exc:
                raise ValueError(str(exc)) from None
            fingerprint = {"signal": signal.name, "fingerprint": value}
            items.append(_Item({"query": fingerprint}, [fingerprint]))
    return items


# ----------------------------------------------------------------------------- answering

def _ask_node(info: dict, token: str, fingerprints: list[dict], wait: float) -> list[dict]:
    """The API's result objects for `fingerprints`, in order (batches of BATCH)."""
    import json
    import time

    results: list[dict] = []
    deadline = time.monotonic() + wait
    for start in range(0, len(fingerprints), BATCH):
        body = json.dumps({"fingerprints": fingerprints[start:start + BATCH]}).encode()
        while True:
            try:
                results.extend(json.loads(post_to_node(info, token, "/v1/match", body, timeout=300))["results"])
                break
            except NodeRequestError as exc:
                if exc.status == 503 and time.monotonic() < deadline:
                    time.sleep(0.5)  # the node is still building its index
                    continue
                if exc.status == 404:
                    raise RuntimeError(
                        "the node serving this directory has no match API (is its [node] role \"platform\"?)"
                    ) from None
                raise RuntimeError(str(exc)) from None
    return results


def _ask_database(db_path, fingerprints: list[dict]) -> list[dict]:
    """The same result objects, from an index built here from the database."""
    from node.matcher.api import MAX_MATCHES
    from node.matcher.service import Matcher, Query
    from node.store import is_postgres

    if not is_postgres(db_path) and not db_path.exists():
        raise RuntimeError(f"no database at {db_path}: this node has followed nothing yet")
    matcher = Matcher(pending_load=True)
    matcher.load(db_path, read_only=True)
    try:
        queries = [Query.from_json(fp) for fp in fingerprints]
        results = matcher.match_many(queries, limit=MAX_MATCHES)
        described = matcher.describe_many([result.hits for result in results])
        return [{"signal": query.signal, "matches": matches, "total": result.total}
                for query, result, matches in zip(queries, results, described)]
    finally:
        matcher.close()


@reports_datadir_errors
def run(args) -> int:
    import json

    from node.datadir import DataDir

    if not args.paths and not args.pdq and not args.md5:
        return fail("give files to match (PATH...) or fingerprints (--pdq HEX, --md5 HEX)", EXIT_USAGE)
    datadir = DataDir(args.dir)
    _ = datadir.config  # load and validate before anything else
    try:
        items = _items(args)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)

    fingerprints = [fp for item in items if not item.error for fp in item.fingerprints]
    info = datadir.serving_node()
    try:
        if not fingerprints:
            results = []
        elif info and not args.local:
            results = _ask_node(info, datadir.admin_token(), fingerprints, args.wait)
        else:
            results = _ask_database(datadir.db_path, fingerprints)
    except RuntimeError as exc:  # a DataDirError is one too, and says the same
        return fail(str(exc))

    position = 0
    for item in items:
        if item.error:
            continue
        for _ in item.fingerprints:
            result = results[position]
            position += 1
            item.matches.extend(result["matches"])
            item.total += result["total"]
        item.matches.sort(key=lambda m: (m["distance"], m["origin"], m["index"]))

    status = EXIT_OK
    for item in items:
        if item.error:
            status = EXIT_FAILED
            where = item.label.get("path", "query")
            print(f"error: {where}: {item.error}", file=sys.stderr)
        if args.json:
            line = dict(item.label)
            if item.error:
                line["error"] = item.error
            else:
                line["signals"] = [fp["signal"] for fp in item.fingerprints]
            line["matches"] = item.matches
            line["total"] = item.total
            print(json.dumps(line), flush=True)
        elif not item.error:
            _print_human(item)
    return status


def _print_human(item: _Item) -> None:
    name = item.label.get("path") or f"{item.label['query']['signal']} {item.label['query']['fingerprint']}"
    if not item.total:
        print(f"{name}: no match")
        return
    print(f"{name}: {item.total} match{'es' if item.total != 1 else ''}")
    for m in item.matches:
        distance = m["distance"]
        detail = f"distance {distance}" if "query_coverage" not in m else \
            f"{m['query_coverage']}% of its frames matched ({m['indexed_coverage']}% of the entry's)"
        extras = []
        if m.get("labels"):
            extras.append("labels " + ",".join(m["labels"]))
        if m.get("feedback"):
            extras.append("feedback " + ", ".join(f"{k} x{v}" for k, v in sorted(m["feedback"].items())))
        print(f"  {m['origin']}#{m['index']}  {m['signal']}  {detail}" + ("  " + "; ".join(extras) if extras else ""))


# ----------------------------------------------------------------------------- thresholds

@reports_datadir_errors
def run_threshold(args) -> int:
    import json

    from node.datadir import DataDir
    from node.store import open_db

    datadir = DataDir(args.dir)
    threshold: int | None = None
    if args.threshold is not None:
        if args.threshold != "default":
            try:
                threshold = int(args.threshold)
            except ValueError:
                threshold = -1
            if not 0 <= threshold <= 256:
                return fail("the threshold is a whole number from 0 to 256, or 'default'", EXIT_USAGE)
    _ = datadir.config  # load and validate before anything else
    if args.origin is None or args.threshold is None:
        db = open_db(datadir.db_path)
        try:
            current = db.matching.thresholds()
        finally:
            db.close()
        for origin, value in sorted(current.items()):
            if args.origin in (None, origin):
                print(f"{origin}\t{value}")
        if args.origin is not None and args.origin not in current:
            print(f"{args.origin}\t31 (default)")
        return EXIT_OK
    info = datadir.serving_node()
    if info:
        body = json.dumps({"origin": args.origin, "threshold": threshold}).encode()
        try:
            answer = json.loads(post_to_node(info, datadir.admin_token(), "/v1/match/threshold", body, timeout=30))
        except NodeRequestError as exc:
            if exc.status is None:
                return fail(str(exc))
            return fail(f"the node refused: {exc.body.decode(errors='replace')}")
        print(f"{answer['origin']}\t{answer['threshold']}")
        return EXIT_OK
    db = open_db(datadir.db_path)
    try:
        db.matching.set_threshold(args.origin, threshold)
    finally:
        db.close()
    print(f"{args.origin}\t{31 if threshold is None else threshold}")
    return EXIT_OK
