"""The node's HTTP shell (aiohttp): app.py builds the two sites from a node.runtime.Node
and lists the route modules (`*_routes.py`), server.py runs them."""
