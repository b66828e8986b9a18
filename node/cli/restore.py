"""`ncii-node restore BACKUP DIR`: a data directory from a backup, checked first."""

from __future__ import annotations

import sys

from node.cli._common import fail


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "restore",
        help="make a data directory from a backup (ncii-node backup)",
        description="Checks every file of BACKUP against its backup.json, copies it into the new directory DIR, "
        "opens the database (migrating it if this version is newer) and checks that its latest checkpoint is the "
        "backup's. The restored log is at the backup's size: if the node published more after the backup, "
        "compare with a follower before serving (appending would fork the log). Then `ncii-node serve --dir DIR`.",
    )
    p.add_argument("backup", metavar="BACKUP", help="a directory written by `ncii-node backup`")
    p.add_argument("dir", metavar="DIR", help="the data directory to create (new or empty)")
    p.set_defaults(func=run)


def run(args) -> int:
    import datetime
    from pathlib import Path

    from node.backup import BackupError, restore

    try:
        report = restore(Path(args.backup), Path(args.dir))
    except (BackupError, OSError, RuntimeError) as exc:
        return fail(f"restore failed: {exc}")
    when = datetime.datetime.fromtimestamp(report.backed_up_at, datetime.timezone.utc).isoformat(timespec="seconds")
    pending = report.entries - report.size
    print(f"restored {report.origin} at checkpoint {report.size} (backed up {when}) into {report.path}"
          + (f"; {pending} more entries were stored and are published when it starts" if pending else ""))
    print(f"warning: {report.warning}", file=sys.stderr)
    print(f"next: ncii-node serve --dir {args.dir}")
    return 0
