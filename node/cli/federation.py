"""`ncii-node federation ...`: a signed federation membership list (spec/parts/joining.md §3).

Whoever holds the federation's list key(s) (a coordinator, or k of n members):

    ncii-node federation key --name example.org/federation --out list.key   # prints the vkey
    ncii-node federation sign --federation example.org/federation --serial 1 \\
        --key list.key --out members.list bundles.txt     # one invitation bundle a line
    ncii-node federation cosign --key other.key members.list             # k of n: another holder
    ncii-node federation publish --dir DIR --key list.key members.list
        # appends the version to DIR's list log (checkpoint signed with --key; publishing
        # the same version again with another key adds its signature: k of n), served at
        # GET /federation/checkpoint, /federation/tile/..., /federation/version/N, /federation/list

Each node that follows the list:

    ncii-node federation follow --dir DIR https://coord.example/federation/list --key VKEY [--key VKEY --quorum 2]
    ncii-node federation pending|approve ID...|--all|reject ID...|--all|update|show|unfollow --dir DIR
"""

from __future__ import annotations

import sys

from node.cli._common import add_dir_argument, fail, reports_datadir_errors
from node.cli.follow import _database, _tell_running_node

DEFAULT_INTERVAL = 300.0


def register(subparsers) -> None:
    p = subparsers.add_parser("federation", help="a signed federation membership list: sign, publish, follow, approve",
                              description="A federation's membership list names its logs (origin, URL, log key, "
                              "request key, role, name), signed by the federation's list key(s). Nodes follow it: "
                              "what adds trust waits for the operator's approval.")
    sub = p.add_subparsers(dest="federation_command", metavar="ACTION", required=True)

    key = sub.add_parser("key", help="create a list key (prints its verifier key)")
    key.add_argument("--name", required=True, help="the key's name, e.g. example.org/federation")
    key.add_argument("--out", required=True, help="the private key file to create (mode 0600)")
    key.set_defaults(func=run_key)

    sign = sub.add_parser("sign", help="sign a list of members given as invitation bundles",
                          description="Reads invitation bundles (ncii-node invite), one a line (# comments and blank "
                          "lines ignored), and writes the signed membership list.")
    sign.add_argument("bundles", metavar="BUNDLES_FILE", help="invitation bundles, one a line; - for stdin")
    sign.add_argument("--federation", required=True, help="the federation's name (no space), the same in every version")
    sign.add_argument("--serial", type=int, required=True, help="the version: higher than every earlier one")
    sign.add_argument("--key", action="append", required=True, help="a list key file (repeat for several)")
    sign.add_argument("--out", help="write here (default: stdout)")
    sign.set_defaults(func=run_sign)

    cosign = sub.add_parser("cosign", help="add another list key holder's signature to a signed list (k of n)")
    cosign.add_argument("list", metavar="LIST")
    cosign.add_argument("--key", required=True, help="the list key file")
    cosign.add_argument("--out", help="write here (default: replace LIST)")
    cosign.set_defaults(func=run_cosign)

    publish = sub.add_parser("publish", help="append a signed list to this node's list log, served under /federation/",
                             description="Appends the version to the federation list's append-only log in DIR and "
                             "signs the log's checkpoint with each --key; publishing the newest version again with "
                             "another list key adds that key's signature to the checkpoint (k of n). Each witness "
                             "this node uses is asked to cosign the checkpoint; the running node asks those that "
                             "did not again, in the background, until each has (`ncii-node status` lists them).")
    add_dir_argument(publish)
    publish.add_argument("list", metavar="LIST")
    publish.add_argument("--key", action="append", required=True,
                         help="a list key file that signs the log's checkpoint (repeat for several)")
    publish.add_argument("--no-witness", action="store_true",
                         help="do not ask this node's witnesses (`ncii-node witness use`) to cosign the checkpoint "
                         "now (the running node still asks them, in the background)")
    publish.set_defaults(func=run_publish)

    follow = sub.add_parser("follow", help="follow a federation's list (fetched and verified now)",
                            description="Fetches the list at URL and verifies it with the list key(s) given; then a "
                            "running node fetches it every --interval seconds. Nothing that adds trust is done "
                            "without `federation approve`.")
    add_dir_argument(follow)
    follow.add_argument("url", metavar="URL", help="the list's URL, e.g. https://coord.example/federation/list")
    follow.add_argument("--key", action="append", required=True, help="a list verifier key (repeat for several)")
    follow.add_argument("--quorum", type=int, default=1, help="how many of the keys must sign (default 1)")
    follow.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help=f"seconds between fetches by the running node (default {DEFAULT_INTERVAL:g})")
    follow.add_argument("--witness", action="append", default=[], metavar="VKEY",
                        help="a witness of the federation whose cosignature the list's checkpoints may carry "
                        "(repeat for several)")
    follow.add_argument("--witness-quorum", type=int, default=None, metavar="K",
                        help="how many of the --witness keys must have cosigned each checkpoint (default: 1 if "
                        "any --witness is given)")
    follow.add_argument("--remove-at-once", action="store_true",
                        help="unlink a member the list removes without waiting for approval")
    follow.set_defaults(func=run_follow)

    for name, helptext in (("update", "fetch the list now"), ("show", "the list followed, its version and errors"),
                           ("pending", "the changes waiting for approval"),
                           ("unfollow", "follow the list no more (what it set up stays)")):
        action = sub.add_parser(name, help=helptext)
        add_dir_argument(action)
        action.set_defaults(func=globals()[f"run_{name}"])
    for name in ("approve", "reject"):
        action = sub.add_parser(name, help=f"{name} pending changes (by id, or --all)")
        add_dir_argument(action)
        action.add_argument("ids", metavar="ID", nargs="*")
        action.add_argument("--all", action="store_true")
        action.set_defaults(func=run_decide, approve=name == "approve")


# ---------------------------------------------------------------------- the list's holders

def run_key(args) -> int:
    import os

    from protocol.errors import KeyFormatError
    from protocol.note import Signer

    try:
        signer = Signer.generate(args.name)
    except KeyFormatError as exc:
        return fail(str(exc), 2)
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return fail(f"{args.out} exists; not overwritten", 2)
    with os.fdopen(fd, "wb") as out:
        out.write(signer.to_key_file())
    print(signer.verifier_key())
    return 0


def _signer(path: str):
    from protocol.note import Signer

    with open(path, "rb") as f:
        return Signer.from_key_file(f.read(8192))


def _write(path: str | None, data: bytes) -> None:
    from pathlib import Path

    from node.datadir import write_atomic

    if path is None:
        sys.stdout.write(data.decode())
    else:
        write_atomic(Path(path), data)


def run_sign(args) -> int:
    from node.federation.members import ListError, make_list, sign_list
    from node.invitation import InvitationError, parse
    from protocol.errors import ProtocolError

    text = sys.stdin.read(4 * 1024 * 1024) if args.bundles == "-" else open(args.bundles).read(4 * 1024 * 1024)
    members = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                members.append(parse(line))
            except InvitationError as exc:
                return fail(f"{args.bundles} line {number}: {exc}", 2)
    try:
        member_list = make_list(args.federation, args.serial, members)
        data = sign_list(member_list, [_signer(path) for path in args.key])
    except (ListError, ProtocolError, OSError) as exc:
        return fail(str(exc), 2)
    _write(args.out, data)
    print(f"signed {args.federation} serial {args.serial}: {len(members)} members", file=sys.stderr)
    return 0


def run_cosign(args) -> int:
    from node.federation.members import cosign_list
    from protocol.errors import ProtocolError

    try:
        with open(args.list, "rb") as f:
            data = cosign_list(f.read(), _signer(args.key))
    except (ProtocolError, OSError) as exc:
        return fail(str(exc), 2)
    _write(args.out or args.list, data)
    return 0


@reports_datadir_errors
def run_publish(args) -> int:
    from node.datadir import DataDir
    import asyncio

    from node.federation.publish import PublishError, cosign_with, publish
    from node.store.tiles import TileWriteError
    from protocol.errors import ProtocolError

    datadir = DataDir(args.dir)
    try:
        with open(args.list, "rb") as f:
            data = f.read(8 * 1024 * 1024)
        signers = [_signer(path) for path in args.key]
    except (ProtocolError, OSError) as exc:
        return fail(str(exc), 2)
    report: list[str] = []

    def cosign(note, previous_size, store):
        if args.no_witness:
            return note
        with _database(args) as db:
            witnesses = db.witness.list_log_witnesses()
        if not witnesses:
            return note
        cosigned, lines = asyncio.run(cosign_with(witnesses, note, previous_size, store))
        report.extend(lines)
        return cosigned

    try:
        member_list, size, new = publish(datadir.root, data, signers, cosign)
    except ProtocolError as exc:
        return fail(f"not a signed membership list: {exc}", 2)
    except (PublishError, TileWriteError) as exc:
        return fail(str(exc), 1)
    what = (f"appended {member_list.federation} serial {member_list.serial} ({len(member_list.members)} members) "
            f"to the list log, now {size} version(s)" if new else
            f"serial {member_list.serial} is already the newest version; its checkpoint now carries the signature "
            f"of {', '.join(s.name for s in signers)}")
    print(f"{what}; served at GET /federation/checkpoint, /federation/tile/..., /federation/version/"
          f"{member_list.serial} and /federation/list (at once, also while the node runs)")
    for line in report:
        print("  " + line)
    if args.no_witness or any(line.startswith("NOT") for line in report):
        print("  " + ("the running node asks the witnesses again in the background until each has cosigned "
                      "(`ncii-node status` lists those that have not)" if datadir.serving_node() is not None else
                      "no node runs for this directory: `ncii-node serve` asks the witnesses again until each has "
                      "cosigned"))
    return 0


def published_lines(datadir, db, serving: bool) -> str | None:
    """The list log this node publishes and the witnesses its checkpoint lacks, for
    `status` and `federation show` (None: it publishes none)."""
    from node.federation.cosigning import format_published, published_report

    report = published_report(datadir.root, db.witness.list_log_witnesses())
    return None if report is None else format_published(report, serving)


# ---------------------------------------------------------------------- a following node

def _own(datadir):
    from node.federation.subscription import Own

    return Own(datadir.config.node.role, datadir.config.node.origin)


def _print_outcome(outcome) -> None:
    if outcome.result == "unchanged":
        print(f"the list is unchanged (serial {outcome.serial})")
    else:
        print(f"accepted the list's serial {outcome.serial}")
    for line in outcome.applied:
        print("  applied: " + line)
    _print_pending(outcome.pending)


def _print_pending(changes) -> None:
    if not changes:
        print("no change is waiting for approval")
        return
    print(f"{len(changes)} change(s) wait for your approval (`ncii-node federation approve --dir DIR ID` or --all; "
          "`reject` to refuse):")
    for change in changes:
        print(f"  {change.id}  {change.describe()}")


@reports_datadir_errors
def run_follow(args) -> int:
    import asyncio

    from node.datadir import DataDir
    from node.federation.logfollow import ListForked, Trust
    from node.federation.subscription import SubscriptionError, accept, fetch, record_fork
    from node.follow.client import log_url_problem
    from node.follow.forks import EVIDENCE_DIR
    from protocol.errors import KeyFormatError, ProtocolError
    from protocol.note import Verifier
    from protocol.policy import Policy

    problem = log_url_problem(args.url)
    if problem:
        return fail(f"{problem}: {args.url}", 2)
    try:
        for vkey in args.key:
            Verifier.from_vkey(vkey)
    except KeyFormatError as exc:
        return fail(f"--key is not a list verifier key: {exc}", 2)
    if len(set(args.key)) != len(args.key) or not 1 <= args.quorum <= len(args.key):
        return fail("--quorum must be between 1 and the number of different --key given", 2)
    if not 1 <= args.interval <= 86400:
        return fail("--interval must be between 1 and 86400 seconds", 2)
    witness_quorum = (1 if args.witness else 0) if args.witness_quorum is None else args.witness_quorum
    try:
        Policy.k_of_n(args.witness, witness_quorum)
    except ProtocolError as exc:
        return fail(f"--witness / --witness-quorum: {exc}", 2)
    datadir = DataDir(args.dir)
    with _database(args) as db:
        previous = db.federation.subscription()
    # A node that followed a list before keeps what it accepted: no rollback, no fork.
    trust = Trust(tuple(args.key), args.quorum, previous and previous.federation, previous and previous.checkpoint,
                  tuple(args.witness), witness_quorum)
    try:
        fetched = asyncio.run(fetch(args.url, trust))
    except ListForked as forked:
        with _database(args) as db:
            return fail(record_fork(db, forked, datadir.root / EVIDENCE_DIR), 1)
    except SubscriptionError as exc:
        return fail(f"{exc}; nothing changed", 1)
    with _database(args) as db:
        try:
            with db.atomic():  # the subscription only if its list is accepted
                db.federation.subscribe(args.url, args.key, args.quorum, args.interval, args.remove_at_once,
                                        args.witness, witness_quorum)
                outcome = accept(db, fetched, _own(datadir))
        except SubscriptionError as exc:
            if previous is None:
                return fail(f"{exc}; nothing changed", 1)
            return fail(f"{exc}; the subscription is unchanged", 1)
    print(f"following the federation list at {args.url} (fetched every {args.interval:g} s by the running node)")
    _print_outcome(outcome)
    if outcome.applied:
        print(_tell_running_node(args))
    return 0


@reports_datadir_errors
def run_update(args) -> int:
    import asyncio

    from node.datadir import DataDir
    from node.federation.subscription import SubscriptionError, trust_of, update
    from node.follow.forks import EVIDENCE_DIR

    datadir = DataDir(args.dir)
    with _database(args) as db:
        subscription = db.federation.subscription()
        if subscription is None:
            return fail("this node follows no federation list (`ncii-node federation follow`)", 2)

        async def call(fn):
            return fn(db)

        try:
            outcome = asyncio.run(update(call, subscription.url, trust_of(subscription), _own(datadir),
                                         datadir.root / EVIDENCE_DIR))
        except SubscriptionError as exc:
            return fail(f"{exc}; nothing changed", 1)
    _print_outcome(outcome)
    if outcome.applied:
        print(_tell_running_node(args))
    return 0


@reports_datadir_errors
def run_show(args) -> int:
    from node.datadir import DataDir
    from node.federation.subscription import format_report, newest, report

    datadir = DataDir(args.dir)
    with _database(args) as db:
        federation, member_list = report(db, _own(datadir)), newest(db)
        published = published_lines(datadir, db, datadir.serving_node() is not None)
    if published is not None:
        print(published)
    if federation is None:
        print("following no federation list")
        return 0
    print(format_report(federation))
    for m in member_list.members if member_list is not None else ():
        print(f"  member {m.role:8} {m.origin} {m.url} {m.name!r}")
    return 0


@reports_datadir_errors
def run_unfollow(args) -> int:
    with _database(args) as db:
        found = db.federation.unsubscribe()
    if not found:
        return fail("this node follows no federation list", 2)
    print("no longer following the federation list; the readers, logs and peers it set up stay "
          "(`ncii-node follow remove`, `readers remove` to undo them)")
    return 0


@reports_datadir_errors
def run_pending(args) -> int:
    from node.datadir import DataDir
    from node.federation.subscription import pending

    datadir = DataDir(args.dir)
    with _database(args) as db:
        _print_pending(pending(db, _own(datadir)))
    return 0


@reports_datadir_errors
def run_decide(args) -> int:
    from node.datadir import DataDir
    from node.federation.subscription import SubscriptionError, decide

    if bool(args.ids) == bool(args.all):
        return fail("name the changes (their ids, from `ncii-node federation pending`) or give --all", 2)
    datadir = DataDir(args.dir)
    with _database(args) as db:
        try:
            done = decide(db, _own(datadir), None if args.all else args.ids, args.approve)
        except SubscriptionError as exc:
            return fail(str(exc), 2)
    for line in done or ["no change is waiting for approval"]:
        print(line)
    if args.approve and done:
        print(_tell_running_node(args))
    return 1 if any(line.startswith("NOT applied") for line in done) else 0
