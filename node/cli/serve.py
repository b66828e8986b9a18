"""`ncii-node serve`: run the node (publishing its log over HTTP) until interrupted."""

from __future__ import annotations

from node.cli._common import add_dir_argument, fail


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the node's HTTP server and sequencer",
        description="Serves /checkpoint, /tile/..., /node.json on HOST:PORT and the admin "
        "endpoint on the configured admin address; writes DIR/serve.json with both URLs.",
    )
    add_dir_argument(p)
    p.add_argument("--host", help="address to listen on (default: [http] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: [http] port; 0 = any free port)")
    p.set_defaults(func=run)


def run(args) -> int:
    import asyncio
    import logging

    from node.datadir import DataDir, DataDirError
    from node.web.app import serve

    log = logging.getLogger("node.serve")
    datadir = DataDir(args.dir)
    try:
        datadir.config  # load and validate before anything starts
        asyncio.run(serve(datadir, args.host, args.port))
    except DataDirError as exc:  # before RuntimeError, its base class
        return fail(str(exc))
    except (OSError, RuntimeError) as exc:
        log.error("cannot serve: %s", exc)
        return 1
    return 0
