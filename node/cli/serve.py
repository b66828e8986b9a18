"""`ncii-node serve`: run the node (publishing its log over HTTP) until interrupted."""

from __future__ import annotations

from node.cli._common import add_dir_argument, fail


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the node's HTTP server and sequencer",
        description="Runs the node until interrupted. Public site on HOST:PORT: its log (/checkpoint, "
        "/tile/..., /node.json), /status, the witness routes, and on a helpline the victim web page (/) and "
        "the case API (/v1/cases...). Admin site (loopback, a free port by default): /admin/append, "
        "/v1/feedback, and on a platform the match API (/v1/match...). Follows the logs of `ncii-node follow`, "
        "compares views with `follow peers`. Writes DIR/serve.json with both URLs; spec/openapi.yaml "
        "describes every route.",
    )
    add_dir_argument(p)
    p.add_argument("--host", help="address to listen on (default: [http] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: [http] port; 0 = any free port)")
    p.set_defaults(func=run)


def run(args) -> int:
    import asyncio
    import logging

    from node.datadir import DataDir, DataDirError
    from node.limits import raise_open_files_limit
    from node.web.server import serve

    log = logging.getLogger("node.serve")
    datadir = DataDir(args.dir)
    try:
        datadir.config  # load and validate before anything starts
        log.info("open files: up to %d (the sockets of followers and followed logs; node/limits.py)",
                 raise_open_files_limit())
        asyncio.run(serve(datadir, args.host, args.port))
    except DataDirError as exc:  # before RuntimeError, its base class
        return fail(str(exc))
    except (OSError, RuntimeError) as exc:
        log.error("cannot serve: %s", exc)
        return 1
    return 0
