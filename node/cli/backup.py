"""`ncii-node backup DIR OUT`: a consistent copy of a data directory, while its node serves."""

from __future__ import annotations

from node.cli._common import fail, reports_datadir_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "backup",
        help="copy a data directory consistently, while its node serves",
        description="Writes the new directory OUT: the database copied with SQLite's online backup API (one "
        "consistent state, while the node goes on serving), the tiles of that state's latest checkpoint (checked "
        "against its root), every key, token, configuration and evidence file, and backup.json (the SHA-256 of "
        "every file). OUT holds the log's signing key, the admin token, the case key and the PIN hashes (modes "
        "0700/0600): keep it away from anyone who may not act as this node, encrypted if it leaves the machine. "
        "`ncii-node restore OUT NEWDIR` brings it back.",
    )
    p.add_argument("dir", metavar="DIR", help="the data directory")
    p.add_argument("out", metavar="OUT", help="where to write the backup (a new or empty directory)")
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    import json
    from pathlib import Path

    from node.backup import BackupError, make_backup
    from node.datadir import DataDir

    try:
        report = make_backup(DataDir(args.dir), Path(args.out))
    except (BackupError, OSError) as exc:
        return fail(f"backup failed: {exc}")
    if args.json:
        print(json.dumps({"path": str(report.path), "origin": report.origin, "size": report.size,
                          "entries": report.entries,                          "root_hash": report.root_hash, "files": report.files, "bytes": report.bytes,
                          "seconds": round(report.seconds, 3)}))
    else:
        print(f"backed up {report.origin} at checkpoint {report.size} into {report.path}: {report.files} files, "
              f"{report.bytes / 1e6:.1f} MB in {report.seconds:.1f} s")
        print("it holds the signing key and the case secrets: keep it as safe as the node itself")
    return 0
