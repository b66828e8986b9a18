"""What the application and every route module share: where the node is, which paths
are for registered readers, and how a request's route is named in logs and metrics.

    request.app[NODE]            the node.runtime.Node the application serves
    app[READ_PROTECTED]          path prefixes only registered readers may fetch
                                 (public site; route modules add theirs in `setup`)
    app[READERS_ONLY]            path prefixes only registered readers may fetch even
                                 on a public_read node (the push channel: what it serves
                                 is public, but each request holds resources bounded
                                 per reader)
    route_pattern(request)       "/tile/{rest}", never the path asked (it may hold anything)
    loggable_method(request)     the method if it is a standard one, else "(other method)"
"""

from __future__ import annotations

from aiohttp import web

from node.runtime import Node

NODE = web.AppKey("node", Node)
READ_PROTECTED = web.AppKey("read_protected", list)
READERS_ONLY = web.AppKey("readers_only", list)


def route_pattern(request: web.Request) -> str:
    try:
        match_info = request.match_info
    except AssertionError:  # a request aiohttp's parser refused never reached the router
        return "(no route)"
    route = match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "(no route)"


_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"))


def loggable_method(request: web.BaseRequest) -> str:
    """The method, if it is a standard one: any token is a valid method, and a client
    could send a case number or a PIN as one."""
    return request.method if request.method in _METHODS else "(other method)"
