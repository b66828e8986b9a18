"""`ncii-node selftest`: run the project's and the shared conformance vectors."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "selftest",
        help="check this installation against every test vector it can find",
        description="Runs spec/vectors and, where ../shared/conformance exists, every "
        "conformance vector there (signed notes, Merkle roots and proofs, PDQ, video MD5).",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from node.selftest import run_all

    results = run_all()
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        for r in results:
            if r.skipped:
                print(f"  skip  {r.name}: {r.skipped}")
                continue
            mark = "  ok  " if not r.failed else " FAIL "
            print(f"{mark} {r.name}: {r.passed} passed, {len(r.failed)} failed")
            for name, detail in r.failed[:20]:
                print(f"         - {name}: {detail}")
    total_passed = sum(r.passed for r in results)
    total_failed = sum(len(r.failed) for r in results)
    print(f"{total_passed} passed, {total_failed} failed")
    return 1 if total_failed else 0
