"""`ncii-node invite` and `ncii-node join`: link two nodes with one command on each side.

    A$ ncii-node invite --dir A            # prints one line: A's invitation bundle
    B$ ncii-node join --dir B 'ncii-invite-1....'
         registers A's request key as a reader of B, follows A's log with its key pinned
         (or compares views with A, for two platforms), and prints B's own bundle
    A$ ncii-node join --dir A 'ncii-invite-1....'     # B's bundle: the same on A's side

What each pair of roles sets up is in node/invitation.py (`plan`) and
spec/parts/joining.md. Everything is checked before anything is written: a bundle
that does not parse, or that names a log already followed with another key or URL,
changes nothing.
"""

from __future__ import annotations

import sys

from node.cli._common import add_dir_argument, fail, reports_datadir_errors

def register(subparsers) -> None:
    invite = subparsers.add_parser(
        "invite", help="print this node's invitation bundle (one line) for another node's `join`",
        description="Prints one line, the invitation bundle: this node's URL, origin, role, name, log verifier "
        "key and request key. Send it to the other node's operator over a channel you both trust (it pins "
        "the key their node will believe for your log); they run `ncii-node join BUNDLE`.")
    add_dir_argument(invite)
    invite.add_argument("--url", help="this node's public URL prefix (default: https://ORIGIN)")
    invite.add_argument("--name", help="the name people are shown for this node (default: [node] display_name, "
                        "else the origin)")
    invite.set_defaults(func=run_invite)

    join = subparsers.add_parser(
        "join", help="accept another node's invitation bundle: register, follow or peer as the roles require",
        description="Accepts the bundle another node's `ncii-node invite` printed. A helpline and a platform: "
        "registers the other's request key as a reader of this log and follows the other's log with its key "
        "pinned. Two platforms: registers the other as a reader and compares views with it (gossip). Then "
        "prints this node's own bundle, for the other side to run `join` with.")
    add_dir_argument(join)
    join.add_argument("bundle", metavar="BUNDLE", help="the invitation bundle (ncii-invite-1....), or - to read it "
                      "from standard input")
    join.add_argument("--url", help="this node's public URL prefix, for the bundle printed back "
                      "(default: https://ORIGIN)")
    join.add_argument("--name", help="the name to show people for the other node (default: the bundle's)")
    join.set_defaults(func=run_join)


def own_invitation(datadir, url: str | None, name: str | None):
    """This node's Invitation; raises InvitationError if it cannot make one."""
    from node.invitation import Invitation, InvitationError, check

    config = datadir.config
    if config.node.role not in ("helpline", "platform"):
        raise InvitationError(f"a {config.node.role} node is not linked by invitation (a witness is added with "
                              "`ncii-node witness use` and `witness logs add`)")
    invitation = Invitation(
        url=(url or f"https://{config.node.origin}").rstrip("/"), origin=config.node.origin, role=config.node.role,
        name=name if name is not None else (config.node.display_name or config.node.origin),
        log_vkey=datadir.load_log_signer().verifier_key(),
        request_vkey=datadir.load_request_signer().verifier_key())
    check(invitation)
    return invitation


@reports_datadir_errors
def run_invite(args) -> int:
    from node.datadir import DataDir
    from node.invitation import InvitationError

    try:
        invitation = own_invitation(DataDir(args.dir), args.url, args.name)
    except InvitationError as exc:
        return fail(str(exc), 2)
    print(invitation.encode())
    print(f"(invitation of {invitation.origin}, {invitation.role}, at {invitation.url}: send this line to the "
          "other operator over a channel you trust; they run `ncii-node join --dir DIR BUNDLE`)", file=sys.stderr)
    return 0


@reports_datadir_errors
def run_join(args) -> int:
    from node.cli.follow import _tell_running_node
    from node.datadir import DataDir
    from node.federation.links import LinkError, link
    from node.invitation import InvitationError, parse, plan
    from node.store import open_db

    text = sys.stdin.read(65536) if args.bundle == "-" else args.bundle
    datadir = DataDir(args.dir)
    try:
        theirs = parse(text)
        ours = own_invitation(datadir, args.url, None)
        plan(ours.role, theirs.role)  # refuses a pair of roles with nothing to exchange
    except InvitationError as exc:
        return fail(str(exc), 2)
    if theirs.origin == ours.origin or theirs.log_vkey == ours.log_vkey:
        return fail("this is this node's own invitation; give it to the other node's operator", 2)
    name = theirs.name if args.name is None else args.name
    if len(name) > 100 or not name.isprintable():
        return fail("--name must be printable text of at most 100 characters", 2)
    db = open_db(datadir.db_path)
    try:
        with db.atomic():
            done = link(db, theirs, name, ours.role)
    except LinkError as exc:
        return fail(f"{exc}; nothing changed. If the bundle is right, `ncii-node follow remove` the log first", 1)
    finally:
        db.close()
    print(f"joined {theirs.origin} ({theirs.role}, {theirs.name!r}):")
    for line in done:
        print("  " + line)
    print("  " + _tell_running_node(args))
    print("unless its operator has already run `join` with this node's invitation, send them this line "
          "(over a channel you trust); they run:")
    print(f"  ncii-node join --dir DIR {ours.encode()}")
    return 0
