"""`ncii-node follow add|list|remove`: choose the logs this node follows;
`ncii-node follow peers add|list|remove`: choose the nodes it compares views with.

The verifier key of a followed log is pinned when it is added: only checkpoints
signed by that key are believed (until the log rotates its key with an announcement
signed by the pinned key). `--tofu` takes the key the server presents at /node.json
instead -- trust on first use, which believes whoever answers that first request, so
it prints a loud warning and should be confirmed out of band.

Peers (gossip, node/follow/gossip.py): a running node reads each peer's GET
/witness/seen every `--interval` seconds (default 30) and compares the checkpoints
listed there with the ones it verified; an inconsistency marks the log forked with an
evidence file. Peers live in the database, like followed logs, so adding or removing
one takes effect while the node runs.
"""

from __future__ import annotations

import contextlib
import sys

from node.cli._common import add_dir_argument, fail, reports_datadir_errors

TOFU_WARNING = """\
!!! WARNING: TRUST ON FIRST USE !!!
!!! The verifier key below was taken from what {url} presented, not from you.
!!! Anyone who could answer that request (a wrong URL, a proxy, an attacker) chose
!!! the key this node will now trust for log {origin}.
!!! Confirm it with the log's operator by another channel, then re-add the log with
!!! --vkey if it differs:
!!!     {vkey}"""


def register(subparsers) -> None:
    p = subparsers.add_parser("follow", help="add, list or remove followed logs",
                              description="Choose the logs this node follows and verifies.")
    sub = p.add_subparsers(dest="follow_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="follow a log (its verifier key is pinned)",
                         description="Follow the log at URL: a running node waits for its checkpoints "
                         "(the push channel, when the log's node offers it) or fetches one every "
                         "--interval seconds, verifies the signature with the pinned --vkey, every tile and "
                         "entry, and consistency with what it verified before, then applies the new entries. "
                         "A restricted log must first register this node's `ncii-node key --request` as a reader.")
    add_dir_argument(add)
    add.add_argument("url", metavar="URL", help="the log's URL prefix, e.g. https://helpline.example/log")
    add.add_argument("--vkey", help="the log's verifier key (name+hex+base64), as `ncii-node key` prints it")
    add.add_argument("--name", default="",
                     help="the log's name, yours: the one people are shown (a helpline's case status shows it "
                     "for a platform's feedback; what a log announces about itself is never shown unless you "
                     "approve it with `follow name --from-announcement`)")
    add.add_argument("--origin", help="the log's origin line, when its key is not named like it (C2SP allows "
                     "that; default: the key's name)")
    add.add_argument("--interval", type=float, default=1.0,
                     help="seconds between rounds when the log's node does not push (default 1)")
    add.add_argument("--tofu", action="store_true",
                     help="pin the key the server presents at /node.json (trust on first use: unsafe)")
    add.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for /node.json with --tofu")
    add.set_defaults(func=run_add)

    ls = sub.add_parser("list", help="list followed logs")
    add_dir_argument(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=run_list)

    name = sub.add_parser("name", help="set the name people are shown for a followed log",
                          description="Set the name of a followed log, the one a helpline's case status shows "
                          "people for the platform's feedback. Only the operator names a log: the display name a "
                          "log announces about itself is shown to people only once approved here with "
                          "--from-announcement (which copies it, as it is now, after showing it).")
    add_dir_argument(name)
    name.add_argument("log", metavar="ORIGIN_OR_NAME")
    which = name.add_mutually_exclusive_group(required=True)
    which.add_argument("--set", dest="new_name", metavar="NAME", help="the name to show")
    which.add_argument("--from-announcement", action="store_true",
                       help="approve the display name the log announced, as it is now")
    name.set_defaults(func=run_name)

    rm = sub.add_parser("remove", help="stop following a log and forget its fingerprints")
    add_dir_argument(rm)
    rm.add_argument("log", metavar="ORIGIN_OR_NAME")
    rm.set_defaults(func=run_remove)

    peers = sub.add_parser("peers", help="nodes whose views of the followed logs are compared with ours",
                           description="A running node reads each peer's GET /witness/seen regularly and "
                           "compares it with what it verified itself: a log that shows different histories "
                           "to different nodes is marked forked, with an evidence file in DIR/evidence.")
    peers_sub = peers.add_subparsers(dest="peers_command", metavar="ACTION", required=True)
    padd = peers_sub.add_parser("add", help="compare views with the node at URL")
    add_dir_argument(padd)
    padd.add_argument("url", metavar="URL", help="the peer node's public URL, e.g. https://platform.example")
    padd.add_argument("--interval", type=float, default=30.0, help="seconds between comparisons (default 30)")
    padd.set_defaults(func=run_peers_add)
    plist = peers_sub.add_parser("list", help="list peers and the outcome of the last comparison")
    add_dir_argument(plist)
    plist.add_argument("--json", action="store_true", help="one JSON object per line")
    plist.set_defaults(func=run_peers_list)
    prm = peers_sub.add_parser("remove", help="stop comparing views with the node at URL")
    add_dir_argument(prm)
    prm.add_argument("url", metavar="URL")
    prm.set_defaults(func=run_peers_remove)


@contextlib.contextmanager
def _database(args):
    """The node's database, closed when the command is done with it."""
    from node.datadir import DataDir
    from node.store import open_db

    db = open_db(DataDir(args.dir).db_path)
    try:
        yield db
    finally:
        db.close()


def _check_origin(origin: str) -> str | None:
    """Why `origin` cannot be a checkpoint's origin line, or None."""
    from protocol.checkpoint import Checkpoint
    from protocol.errors import CheckpointError

    try:
        Checkpoint(origin, 0, bytes(32))
    except CheckpointError as exc:
        return str(exc)
    return None


class NodeJsonError(ValueError):
    """A peer's /node.json that says nothing usable."""


def parse_node_json(data: bytes) -> dict:
    """A peer's /node.json (bytes from the network): an object with a verifier_key.
    Raises NodeJsonError, and nothing else, whatever the bytes."""
    import json

    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NodeJsonError("/node.json is not JSON") from None
    if not isinstance(info, dict) or not isinstance(info.get("verifier_key"), str):
        raise NodeJsonError("/node.json has no verifier_key")
    return info


async def _fetch_node_json(url: str, timeout: float) -> dict:
    from node.follow.client import PeerClient

    async with PeerClient(url, timeout=timeout) as client:
        return parse_node_json(await client.node_json())


@reports_datadir_errors
def run_add(args) -> int:
    import asyncio

    from node.follow.client import FetchError, log_url_problem
    from node.store import follow as store
    from protocol.errors import KeyFormatError
    from protocol.note import Verifier

    url = args.url.rstrip("/")
    problem = log_url_problem(url)
    if problem:
        return fail(f"{problem}: {args.url}", 2)
    if not args.vkey and not args.tofu:
        return fail("give the log's verifier key with --vkey (ask its operator for `ncii-node key` output); "
                    "--tofu trusts whatever the server presents and is unsafe", 2)
    if not 0.05 <= args.interval <= 86400:
        return fail("--interval must be between 0.05 and 86400 seconds", 2)
    vkey = args.vkey
    if args.tofu:
        try:
            info = asyncio.run(_fetch_node_json(url, args.timeout))
        except (FetchError, ValueError) as exc:
            return fail(f"cannot read {url}/node.json: {exc}")
        presented = info["verifier_key"]
        if vkey and vkey != presented:
            return fail(f"the server presents {presented}, not the --vkey given; not following")
        vkey = presented
    try:
        verifier = Verifier.from_vkey(vkey)
    except KeyFormatError as exc:
        return fail(f"--vkey is not a log verifier key: {exc}. `follow add --vkey` takes the log's verifier key, "
                    "as `ncii-node key --dir DIR` prints it on the log's node (without --request)", 2)
    # A log's key SHOULD be named like its origin (C2SP tlog-checkpoint); --origin
    # follows a conformant log whose key is named otherwise.
    origin = verifier.name if args.origin is None else args.origin
    problem = _check_origin(origin)
    if problem:
        return fail(f"--origin: {problem}", 2)
    if args.tofu and not args.vkey:
        print(TOFU_WARNING.format(url=url, origin=origin, vkey=vkey), file=sys.stderr)
    with _database(args) as db:
        try:
            store.add_log(db, origin, url, vkey, args.name, tofu=args.tofu and not args.vkey,
                          interval=args.interval)
        except ValueError as exc:
            return fail(str(exc))
    print(f"following {origin} at {url}" + (f" as {args.name!r}" if args.name else ""))
    print(f"pinned verifier key: {vkey}")
    if origin != verifier.name:
        print(f"note: the key is named {verifier.name!r}, not like the origin; checkpoints of {origin!r} "
              "signed by it are accepted (C2SP allows it)")
    print(_tell_running_node(args) + "; `ncii-node status --dir DIR` shows progress")
    return 0


def _tell_running_node(args) -> str:
    """Ask the node serving DIR, if any, to re-read its followed logs and peers now
    (POST /admin/follow/reload); it would within 5 s anyway. Returns what happened."""
    from node.cli._common import NodeRequestError, post_to_node
    from node.datadir import DataDir

    datadir = DataDir(args.dir)
    info = datadir.serving_node()
    if not info:
        return "the node is not running; it starts following when it is"
    try:
        post_to_node(info, datadir.admin_token(), "/admin/follow/reload", b"", timeout=10)
    except NodeRequestError as exc:
        return f"could not tell the running node ({exc}); it picks this up within 5 s"
    return "the running node took this into account"


@reports_datadir_errors
def run_list(args) -> int:
    import json

    from node.store import follow as store

    with _database(args) as db:
        logs = store.list_logs(db)
    for entry in logs:
        if args.json:
            print(json.dumps({"origin": entry.origin, "name": entry.name, "url": entry.url, "vkey": entry.vkey,
                              "tofu": entry.tofu, "interval": entry.interval, "size": entry.size,
                              "forked": entry.forked, "announced_name": entry.display_name}))
        else:
            flags = (" FORKED" if entry.forked else "") + (" (key pinned on first use)" if entry.tofu else "")
            name = f" {entry.name!r}" if entry.name else ""
            print(f"{entry.origin}{name} {entry.url} size {entry.size}{flags}\n    {entry.vkey}")
            if entry.display_name and entry.display_name != entry.name:
                print(f"    announces the name {entry.display_name!r} (not shown to people; "
                      "`ncii-node follow name --from-announcement` approves it)")
    if not logs and not args.json:
        print("following no logs")
    return 0


@reports_datadir_errors
def run_name(args) -> int:
    from node.store import follow as store

    with _database(args) as db:
        entry = store.find_log(db, args.log)
        if entry is None:
            return fail(f"no followed log with origin or name {args.log!r}")
        new = args.new_name
        if args.from_announcement:
            if not entry.display_name:
                return fail(f"{entry.origin} has announced no display name")
            new = entry.display_name
            print(f"{entry.origin} announces the name {new!r}; approved: people will be shown it")
        new = new.strip()
        if not new or len(new) > 100 or any(not c.isprintable() for c in new):
            return fail("the name must be 1 to 100 printable characters")
        store.set_name(db, entry.origin, new)
    print(f"{entry.origin} is now named {new!r}")
    return 0


@reports_datadir_errors
def run_remove(args) -> int:
    from node.store import follow as store

    with _database(args) as db:
        origin = store.remove_log(db, args.log)
    if origin is None:
        return fail(f"no followed log has the origin or name {args.log!r} (see `ncii-node follow list`)")
    print(f"no longer following {origin}; its fingerprints were removed (fork evidence, if any, is kept)")
    print(_tell_running_node(args))
    return 0


@reports_datadir_errors
def run_peers_add(args) -> int:
    from node.follow.client import log_url_problem
    from node.store import follow as store

    url = args.url.rstrip("/")
    problem = log_url_problem(url)
    if problem:
        return fail(f"{problem}: {args.url}", 2)
    if not 1 <= args.interval <= 86400:
        return fail("--interval must be between 1 and 86400 seconds", 2)
    with _database(args) as db:
        added = store.add_gossip_peer(db, url, args.interval)
    print(f"{'comparing views with' if added else 'already a peer, interval updated:'} {url} "
          f"every {args.interval:g} s (GET {url}/witness/seen)")
    print("unless that node is public_read, its operator must register this node as a reader: "
          "ncii-node readers add --dir THEIR_DIR \"$(ncii-node key --dir THIS_DIR --request)\"")
    print(_tell_running_node(args))
    return 0


@reports_datadir_errors
def run_peers_list(args) -> int:
    import json

    from node.follow.status import iso_time
    from node.store import follow as store

    with _database(args) as db:
        peers = store.list_gossip_peers(db)
    for peer in peers:
        if args.json:
            print(json.dumps({"url": peer.url, "interval": peer.interval, "checked_at": iso_time(peer.checked_at),
                              "last_error": peer.last_error, "failures": peer.failures}))
        else:
            state = f"last problem: {peer.last_error}" if peer.last_error else \
                f"compared {iso_time(peer.checked_at)}" if peer.checked_at else "not compared yet"
            print(f"{peer.url} every {peer.interval:g} s  ({state})")
    if not peers and not args.json:
        print("no peers: views are not compared (ncii-node follow peers add --dir DIR URL)")
    return 0


@reports_datadir_errors
def run_peers_remove(args) -> int:
    from node.store import follow as store

    with _database(args) as db:
        removed = store.remove_gossip_peer(db, args.url.rstrip("/"))
    if not removed:
        return fail(f"{args.url} is not a peer (see `ncii-node follow peers list`)", 1)
    print(f"no longer comparing views with {args.url.rstrip('/')}")
    print(_tell_running_node(args))
    return 0
