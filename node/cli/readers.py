"""`ncii-node readers`: the nodes allowed to read this log's tiles and entry bundles.

A reader is identified by its request key (what `ncii-node key --request` prints on
the reader's node). Changes take effect immediately, even while the node is serving:
a removed reader's next signed request is refused (401), and the push waits and
streams it holds open end within half a second, in every `serve` process of the node
(node/web/push_routes.py).
"""

from __future__ import annotations

from node.cli._common import add_dir_argument, fail, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "readers",
        help="add, list or remove the registered readers of this log",
        description="Registered readers may fetch tiles and entry bundles of a log that is not "
        "public; each signs its requests with the request key registered here.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="register a reader's request key")
    add_dir_argument(add)
    add.add_argument("vkey", metavar="VKEY", help="the reader's request key (name+hhhhhhhh+base64)")
    add.add_argument("--name", default="", help="a note for people, e.g. the organisation")
    add.set_defaults(func=run)
    ls = actions.add_parser("list", help="list the registered readers")
    add_dir_argument(ls)
    ls.set_defaults(func=run)
    rm = actions.add_parser("remove", help="remove a reader (by request key, or by name)")
    add_dir_argument(rm)
    rm.add_argument("vkey", metavar="VKEY", help="the reader's request key, or the name it was added with")
    rm.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import datetime

    from node.datadir import DataDir
    from node.store import open_db

    db = open_db(DataDir(args.dir).db_path)
    try:
        if args.action == "add":
            from node.readaccess import parse_request_vkey, request_key_id
            from protocol.errors import KeyFormatError

            vkey = args.vkey.strip()
            try:
                parse_request_vkey(vkey)
                key_id = request_key_id(vkey)
            except KeyFormatError as exc:
                return fail(f"not a request key: {exc}. `readers add` takes the reader's request key, as "
                            "`ncii-node key --dir DIR --request` prints it on the reader's node")
            if any(c in args.name for c in "\t\n\r"):
                return fail("--name must be a single line without tabs")
            added = db.readers.add_reader(vkey, args.name, key_id)
            print(("added reader " if added else "already a reader (name updated): ") + vkey)
        elif args.action == "list":
            for reader in db.readers.list_readers():
                when = datetime.datetime.fromtimestamp(reader.added_at, datetime.timezone.utc)
                print(f"{reader.vkey}\t{reader.name}\t{when:%Y-%m-%d}")
        elif args.action == "remove":
            removed = db.readers.remove_reader(args.vkey.strip())
            if not removed:
                return fail(f"no reader with key or name {args.vkey!r}")
            print(f"removed {removed} reader{'s' if removed > 1 else ''}: refused from the next request on; open "
                  "push waits and streams end within a second")
        return 0
    finally:
        db.close()
