"""`ncii-node reader-key`: a request key for reading logs without a node of one's own.

A platform that reads helplines' logs through the python-threatexchange extension
(spec/parts/interop.md), or an auditor, signs its reads with a request key like a
node's DIR/keys/request.key. This command makes one (a new file, mode 0600, never
overwritten) and prints its public half, which each helpline registers with
`ncii-node readers add`; given an existing file without --name, it prints the public
half again.
"""

from __future__ import annotations

from node.cli._common import fail


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reader-key",
        help="make a request key to read logs without a node (threatexchange extension, audit)",
        description="With --name, creates FILE holding a new request key (mode 0600; an existing file is "
        "never overwritten); without, reads FILE. Prints the key's public half: the helpline registers it "
        "with `ncii-node readers add --dir DIR KEY`.",
    )
    p.add_argument("file", help="the key file (e.g. /etc/ncii/request.key)")
    p.add_argument("--name", help="the key's name, e.g. your organisation's domain (printable ASCII, no spaces "
                                  "or '+'): creates FILE")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from node.datadir import DataDir
    from node.readaccess import load_request_signer, request_vkey
    from protocol.errors import ProtocolError, UsageError
    from protocol.note import Signer

    path = Path(args.file)
    if args.name is None:
        try:
            print(load_request_signer(path).keyid)
        except UsageError as exc:
            return fail(f"{exc} (to create one: ncii-node reader-key FILE --name NAME)")
        return 0
    try:
        key = Signer.generate(args.name)
        vkey = request_vkey(key.name, key.public_key)
    except ProtocolError as exc:
        return fail(f"--name: {exc}", 2)
    try:
        DataDir(path.parent).write_secret(path, key.to_key_file())
    except FileExistsError:
        return fail(f"{path} exists; it is never overwritten (without --name, the command prints its public key)")
    except OSError as exc:
        return fail(f"cannot create {path}: {exc.strerror or exc}")
    print(vkey)
    return 0
