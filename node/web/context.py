"""What the application and every route module share: where the node is, which paths
are for registered readers, and how a request's route is named in logs and metrics.

    request.app[NODE]            the node.runtime.Node the application serves
    app[READ_PROTECTED]          path prefixes only registered readers may fetch
                                 (public site; route modules add theirs in `setup`)
    route_pattern(request)       "/tile/{rest}", never the path asked (it may hold anything)
"""

from __future__ import annotations

from aiohttp import web

from node.runtime import Node

NODE = web.AppKey("node", Node)
READ_PROTECTED = web.AppKey("read_protected", list)


def route_pattern(request: web.Request) -> str:
    try:
        match_info = request.match_info
    except AssertionError:  # a request aiohttp's parser refused never reached the router
        return "(no route)"
    route = match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "(no route)"
