"""`ncii-node readers`: the nodes allowed to read this log's tiles and entry bundles.

A reader is identified by its request key (what `ncii-node key --request` prints on
the reader's node). Changes take effect immediately, even while the node is serving.
"""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "readers",
        help="add, list or remove the registered readers of this log",
        description="Registered readers may fetch tiles and entry bundles of a log that is not "
        "public; each signs its requests with the request key registered here.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="register a reader's request key")
    add.add_argument("--dir", required=True, help="data directory")
    add.add_argument("vkey", metavar="VKEY", help="the reader's request key (name+hhhhhhhh+base64)")
    add.add_argument("--name", default="", help="a note for people, e.g. the organisation")
    add.set_defaults(func=run)
    ls = actions.add_parser("list", help="list the registered readers")
    ls.add_argument("--dir", required=True, help="data directory")
    ls.set_defaults(func=run)
    rm = actions.add_parser("remove", help="remove a reader (by request key, or by name)")
    rm.add_argument("--dir", required=True, help="data directory")
    rm.add_argument("vkey", metavar="VKEY", help="the reader's request key, or the name it was added with")
    rm.set_defaults(func=run)


def run(args) -> int:
    import datetime

    from node.datadir import DataDir, DataDirError
    from node.store import log as log_store
    from node.store import open_db

    datadir = DataDir(args.dir)
    try:
        db = open_db(datadir.db_path)
    except DataDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "add":
            from node.readaccess import parse_request_vkey
            from protocol.errors import KeyFormatError
            from protocol.note import Verifier

            vkey = args.vkey.strip()
            try:
                parse_request_vkey(vkey)
                key_id = Verifier.from_vkey(vkey).key_id
            except KeyFormatError as exc:
                print(f"error: not a request key: {exc}", file=sys.stderr)
                return 1
            if any(c in args.name for c in "\t\n\r"):
                print("error: --name must be a single line without tabs", file=sys.stderr)
                return 1
            added = log_store.add_reader(db, vkey, args.name, key_id)
            print(("added reader " if added else "already a reader (name updated): ") + vkey)
        elif args.action == "list":
            for reader in log_store.list_readers(db):
                when = datetime.datetime.fromtimestamp(reader.added_at, datetime.timezone.utc)
                print(f"{reader.vkey}\t{reader.name}\t{when:%Y-%m-%d}")
        elif args.action == "remove":
            removed = log_store.remove_reader(db, args.vkey.strip())
            if not removed:
                print(f"error: no reader with key or name {args.vkey!r}", file=sys.stderr)
                return 1
            print(f"removed {removed} reader{'s' if removed > 1 else ''}")
        return 0
    finally:
        db.close()
