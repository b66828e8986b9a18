"""`ncii-node witness`: the witness role, and this log's own witnesses.

Witness role (this node cosigns other logs' checkpoints at POST /add-checkpoint):
    witness key    --dir DIR [--name NAME]      print (creating it if needed) the cosigning vkey
    witness logs add    --dir DIR ORIGIN VKEY [--name NAME] [--interval SECONDS]
    witness logs list   --dir DIR
    witness logs remove --dir DIR ORIGIN|VKEY

Publishing role (this node's checkpoints are sent to witnesses and served cosigned):
    witness use    --dir DIR VKEY URL [--name NAME]   VKEY: the witness's cosigner key
    witness unuse  --dir DIR VKEY|NAME
    witness policy --dir DIR K                        want K cosignatures per checkpoint
    witness status --dir DIR

Following role (refuse checkpoints of a followed log without the cosignatures it needs):
    witness require --dir DIR ORIGIN -k K --witness VKEY [--witness VKEY ...]
    witness require --dir DIR ORIGIN --policy FILE    a C2SP tlog-policy (groups, thresholds)
    witness require --dir DIR ORIGIN --off

Changes are read by a running node: witnesses added with `use` are used from the next
checkpoint, logs added with `logs add` at once (a node that was not yet a witness needs
a restart to create its key and start answering).
"""

from __future__ import annotations

import sys

from node.cli._common import add_dir_argument, fail, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser("witness", help="witness other logs, or have this log witnessed",
                              description=__doc__.split("\n\n", 1)[1], formatter_class=_raw())
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    key = actions.add_parser("key", help="print this node's witness (cosigner) key, creating it if needed")
    add_dir_argument(key)
    key.add_argument("--name", help="key name when it is created (default: the node's origin)")

    logs = actions.add_parser("logs", help="the logs this witness cosigns")
    logs_actions = logs.add_subparsers(dest="logs_action", metavar="ACTION", required=True)
    add = logs_actions.add_parser("add", help="trust VKEY for checkpoints of ORIGIN")
    add_dir_argument(add)
    add.add_argument("origin", metavar="ORIGIN")
    add.add_argument("vkey", metavar="VKEY")
    add.add_argument("--name", default="")
    add.add_argument("--interval", type=float, metavar="SECONDS",
                     help="the add-checkpoint rate the log declared: at most one round every SECONDS "
                          "(listed in /node.json; a log that sends more is reported in the node's log)")
    ls = logs_actions.add_parser("list", help="list the logs and keys, with the latest cosigned size")
    add_dir_argument(ls)
    rm = logs_actions.add_parser("remove", help="stop witnessing a log (its cosigned state is kept)")
    add_dir_argument(rm)
    rm.add_argument("origin", metavar="ORIGIN|VKEY")

    use = actions.add_parser("use", help="send this log's checkpoints to a witness")
    add_dir_argument(use)
    use.add_argument("vkey", metavar="VKEY", help="the witness's cosigner key (`ncii-node witness key` on its node)")
    use.add_argument("url", metavar="URL", help="the witness's submission prefix (POST URL/add-checkpoint)")
    use.add_argument("--name", default="")
    unuse = actions.add_parser("unuse", help="stop sending checkpoints to a witness")
    add_dir_argument(unuse)
    unuse.add_argument("vkey", metavar="VKEY|NAME")
    policy = actions.add_parser("policy", help="how many cosignatures each checkpoint should carry (k of n)")
    add_dir_argument(policy)
    policy.add_argument("k", type=int, metavar="K")
    status = actions.add_parser("status", help="this log's witnesses and what they last cosigned")
    add_dir_argument(status)

    require = actions.add_parser("require", help="refuse checkpoints of a followed log without k of n cosignatures")
    add_dir_argument(require)
    require.add_argument("origin", metavar="ORIGIN")
    require.add_argument("-k", type=int, default=None, help="cosignatures required")
    require.add_argument("--witness", action="append", default=[], metavar="VKEY", help="a trusted witness key")
    require.add_argument("--policy", metavar="FILE", help="a C2SP tlog-policy file (logs, witnesses, groups, "
                         "quorum) instead of -k and --witness")
    require.add_argument("--off", action="store_true", help="remove the requirement")
    p.set_defaults(func=run)


def _require(db, args) -> int:
    """`witness require`: store the tlog-policy a followed log's checkpoints must meet."""
    from node.store import witness as store
    from node.witness.policy import PolicyOptionError, policy_from_options

    if args.off:
        store.remove_follow_policy(db, args.origin)
        print(f"no cosignatures required for {args.origin}")
        return 0
    if args.k is not None and args.k < 1:
        return fail("-k must be at least 1 (use --off to require no cosignature)")
    try:
        policy = policy_from_options(args.policy, args.witness, args.k)
    except PolicyOptionError as exc:
        return fail(str(exc))
    if policy is None:
        return fail("give -k K and at least one --witness VKEY, or --policy FILE (or --off)")
    if policy.logs and not any(log.verifier.name == args.origin for log in policy.logs):
        return fail(f"{args.policy} lists logs, but none is named {args.origin!r}: every checkpoint would be "
                    "refused (C2SP tlog-policy: a log's key name is its origin; leave the log lines out to "
                    "rely on the key pinned with `follow add`)")
    store.set_follow_policy(db, args.origin, policy.to_bytes(), "file" if args.policy else "flags")
    print(f"checkpoints of {args.origin} now need {policy.describe()} "
          f"({len(policy.witnesses)} witness(es) known to the policy)")
    return 0


def _describe_policy(policy_bytes: bytes) -> str:
    from protocol.policy import PolicyError, parse_policy

    try:
        return parse_policy(policy_bytes).describe()
    except PolicyError as exc:
        return f"an unusable policy ({exc})"


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


@reports_datadir_errors
def run(args) -> int:
    from node.datadir import DataDir
    from node.store import open_db
    from node.store import witness as store
    from protocol.checkpoint import Checkpoint
    from protocol.cosignature import CosignatureVerifier
    from protocol.errors import CheckpointError, KeyFormatError
    from protocol.note import Verifier

    datadir = DataDir(args.dir)
    if args.action == "key":
        from node.witness.keys import load_witness_signer

        print(load_witness_signer(datadir, create=True, name=args.name).verifier_key())
        return 0
    db = open_db(datadir.db_path)
    try:
        if args.action == "logs":
            if args.logs_action == "add":
                try:
                    verifier = Verifier.from_vkey(args.vkey.strip())
                except KeyFormatError as exc:
                    return fail(f"not a log verifier key: {exc}")
                try:
                    Checkpoint(args.origin, 0, bytes(32))
                except CheckpointError as exc:
                    return fail(f"not an origin line: {exc}")
                if verifier.name != args.origin:
                    # C2SP tlog-checkpoint: the key name SHOULD match the origin; a
                    # conformant log may name it otherwise, and we witness it all the same.
                    print(f"note: the key is named {verifier.name!r}, not like the origin {args.origin!r} "
                          "(allowed by C2SP); it is trusted for this origin only", file=sys.stderr)
                if args.interval is not None and not 0.1 <= args.interval <= 86400:
                    return fail("--interval must be between 0.1 and 86400 seconds")
                added = store.add_known_log(db, args.origin, verifier.vkey, args.name)
                if args.interval is not None:
                    store.set_log_rate(db, args.origin, args.interval)
                print(("witnessing " if added else "already witnessed (name updated): ") + f"{args.origin} {verifier.vkey}")
            elif args.logs_action == "list":
                rates = store.log_rates(db)
                for known in store.list_known_logs(db):
                    latest = store.witness_latest(db, known.origin)
                    rate = f"declared: one round per {rates[known.origin]:g} s" if known.origin in rates else \
                        "no declared rate"
                    print(f"{known.origin}\t{known.vkey}\t{known.name}\t"
                          f"{'cosigned size ' + str(latest.size) if latest else 'nothing cosigned yet'}\t{rate}")
            else:
                n = store.remove_known_log(db, args.origin.strip())
                if not n:
                    return fail(f"no witnessed log or key {args.origin!r}")
                print(f"removed {n} key(s)")
        elif args.action == "use":
            try:
                verifier = CosignatureVerifier.from_vkey(args.vkey.strip())
            except KeyFormatError as exc:
                return fail(f"not a witness cosigner key: {exc}")
            if not args.url.startswith(("http://", "https://")):
                return fail("URL must start with http:// or https://")
            added = store.add_log_witness(db, verifier.vkey, args.url.rstrip("/"), args.name)
            print(("using witness " if added else "witness updated: ") + f"{verifier.vkey} at {args.url}")
        elif args.action == "unuse":
            if not store.remove_log_witness(db, args.vkey.strip()):
                return fail(f"no witness {args.vkey!r}")
            print("witness removed")
        elif args.action == "policy":
            n = len(store.list_log_witnesses(db))
            if args.k < 0:
                return fail("K must be 0 or more")
            if args.k > n:
                print(f"warning: {args.k} cosignatures wanted but only {n} witness(es) configured", file=sys.stderr)
            store.set_log_policy(db, args.k)
            print(f"policy: {args.k} of {n}")
        elif args.action == "status":
            k = store.get_log_policy(db)
            witnesses = store.list_log_witnesses(db)
            print(f"policy: {k if k is not None else 'none'} of {len(witnesses)}")
            print(f"add-checkpoint rate: at most one round every "
                  f"{datadir.config.witness.add_checkpoint_interval:g} s ([witness] add_checkpoint_interval)")
            for w in witnesses:
                state = f"cosigned size {w.last_size}" if w.last_line else "no cosignature yet"
                print(f"{w.name or '-'}\t{w.url}\t{state}\t{'last error: ' + w.last_error if w.last_error else ''}")
            for origin, policy_bytes, source in store.list_follow_policies(db):
                print(f"following {origin}: needs {_describe_policy(policy_bytes)} (from {source})")
        elif args.action == "require":
            return _require(db, args)
        return 0
    finally:
        db.close()
